// Placeholder until its owner lands the real step.
export default async function setup(_root: string): Promise<void> {}
