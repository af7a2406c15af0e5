// The kinds of value a `run` setting holds, as zod schemas: what a flag, an AITBC_* variable
// (always a string) or a config-file value (JSON) may say, and the one line a bad one gets.
import { z } from "zod";

/** Integers are plain decimal digits: Number() would take "0x10", "1e1" or " 16 " as well. */
export const DECIMAL_INT = /^\d{1,15}$/;

export const httpUrl = z
  .string()
  .trim()
  .refine((s) => {
    try {
      const u = new URL(s);
      return (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== "";
    } catch {
      return false;
    }
  }, "must be an http:// or https:// URL")
  .transform((s) => s.replace(/\/+$/, ""));

/** A whole number in [min, max], given as a number or as decimal digits. */
export const intIn = (min: number, max: number) =>
  z.preprocess(
    (v) => (typeof v === "string" && DECIMAL_INT.test(v) ? Number(v) : v),
    z
      .number({ error: `must be a whole number in [${min}, ${max}] (decimal digits)` })
      .int(`must be a whole number in [${min}, ${max}]`)
      .min(min, `must be a whole number in [${min}, ${max}]`)
      .max(max, `must be a whole number in [${min}, ${max}]`),
  );

/** A non-negative decimal in [0, max] ("0.25"). */
export const decimalUpTo = (max: number) =>
  z
    .preprocess(
      (v) => (typeof v === "string" && /^\d{1,15}(\.\d{1,15})?$/.test(v) ? Number(v) : v),
      z.number({ error: "must be a decimal number such as 0.25" }).nonnegative(),
    )
    .refine((n) => n <= max, `must be at most ${max}`);

/** A decimal in [min, max] ("0.5"), min above 0 allowed. */
export const decimalIn = (min: number, max: number) =>
  z
    .preprocess(
      (v) => (typeof v === "string" && /^\d{1,15}(\.\d{1,15})?$/.test(v) ? Number(v) : v),
      z.number({ error: `must be a number in [${min}, ${max}] such as 0.5` }),
    )
    .refine((n) => n >= min && n <= max, `must be a number in [${min}, ${max}]`);

/** A switch: true/false, or from the environment true/false/1/0/yes/no. */
export const bool = z
  .union([z.boolean(), z.enum(["true", "false", "1", "0", "yes", "no"])])
  .transform((v) => {
    if (typeof v === "boolean") return v;
    return v === "true" || v === "1" || v === "yes";
  });

/** Text of 1 to `max` characters. */
export const text = (max?: number) => (max === undefined ? z.string().min(1) : z.string().min(1).max(max));
