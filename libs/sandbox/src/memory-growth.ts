/** The part of a `WebAssembly.Memory` this needs (the compiler's ES lib has no WebAssembly typings). */
export interface GrowableMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

/**
 * Bounds how far one call may grow its worker's WASM memory. The heap sample of the interrupt
 * handler runs only every few thousand operations, so a loop allocating large strings could take
 * hundreds of MiB between two samples, for seconds (reported as a time limit, or stopped by the
 * watchdog while every other call on the worker waited). Every allocation the WASM heap cannot
 * serve asks this memory to grow (Emscripten's `sbrk`), so here a call that has already grown the
 * memory by its limit is refused more: the allocation fails inside QuickJS ("out of memory") at once.
 * A call may overshoot by the one growth step that crossed the limit (Emscripten grows by 20 %).
 */
export class MemoryGrowthCap {
  private start = 0;
  private allowance = Number.POSITIVE_INFINITY;
  /** Whether a growth was refused since the last `cap`. */
  refused = false;

  constructor(private readonly memory: GrowableMemory) {
    const grow = memory.grow.bind(memory);
    memory.grow = (pages: number) => {
      if (this.memory.buffer.byteLength - this.start >= this.allowance) {
        this.refused = true;
        throw new RangeError("the call has grown the sandbox memory by its memory limit");
      }
      return grow(pages);
    };
  }

  /** Until `release`, the memory may grow by about `bytes` more. */
  cap(bytes: number): void {
    this.start = this.memory.buffer.byteLength;
    this.allowance = bytes;
    this.refused = false;
  }

  release(): void {
    this.allowance = Number.POSITIVE_INFINITY;
    this.refused = false;
  }
}
