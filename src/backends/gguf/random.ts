// Deterministic random words in bulk for generated weights: xorshift128 (~1.5 GB/s in V8, several
// times the disk), each stream seeded from the model seed and the stream number through
// src/prng.ts. Same seed and stream → same words, however the caller splits them into chunks.
import { seededRandom } from "../../prng.js";

export class WordStream {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number, stream: number) {
    const r = seededRandom((seed ^ Math.imul(stream + 1, 0x9e3779b1)) >>> 0);
    const word = () => Math.floor(r() * 4294967296) | 0;
    this.s0 = word();
    this.s1 = word();
    this.s2 = word();
    this.s3 = word() | 1; // never the all-zero state
  }

  /** Fill `out` with the next out.length words of the stream. */
  fill(out: Uint32Array): void {
    let s0 = this.s0;
    let s1 = this.s1;
    let s2 = this.s2;
    let s3 = this.s3;
    for (let i = 0; i < out.length; i++) {
      const t = s0 ^ (s0 << 11);
      s0 = s1;
      s1 = s2;
      s2 = s3;
      s3 = s3 ^ (s3 >>> 19) ^ t ^ (t >>> 8);
      out[i] = s3;
    }
    this.s0 = s0;
    this.s1 = s1;
    this.s2 = s2;
    this.s3 = s3;
  }
}
