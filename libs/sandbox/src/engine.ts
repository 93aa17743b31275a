import { newQuickJSWASMModuleFromVariant, newVariant, type QuickJSWASMModule, RELEASE_SYNC } from "quickjs-emscripten";
import { WORKER_MEMORY_BYTES } from "./limits.js";
import { type GrowableMemory, MemoryGrowthCap } from "./memory-growth.js";

// The compiler's ES lib has no WebAssembly typings; this is the one constructor needed.
const { Memory } = (
  globalThis as unknown as { WebAssembly: { Memory: new (size: { initial: number; maximum: number }) => GrowableMemory } }
).WebAssembly;

const page = 64 * 1024;
/** The smallest memory the QuickJS build accepts. */
const initialBytes = 16 * 1024 * 1024;

/** One QuickJS WASM module on a memory of its own: what a worker's scripts run in. */
export interface Engine {
  readonly qjs: QuickJSWASMModule;
  /** Each call may grow the memory by about its own memory limit, no more (see MemoryGrowthCap). */
  readonly growth: MemoryGrowthCap;
  /**
   * Whether the memory is larger than a fresh engine's. WASM memory never shrinks: what a call
   * stopped at its limit took is left free in it, and the next call would use all of that before
   * the growth cap stops it, each stopped call adding about its limit for the next.
   */
  grown(): boolean;
}

export async function startEngine(): Promise<Engine> {
  // A fixed maximum makes allocation past it fail inside QuickJS (an "out of memory" error) instead
  // of growing the process; the stock build may grow to 2 GiB.
  const memory = new Memory({ initial: initialBytes / page, maximum: WORKER_MEMORY_BYTES / page });
  const growth = new MemoryGrowthCap(memory);
  const qjs = await newQuickJSWASMModuleFromVariant(newVariant(RELEASE_SYNC, { wasmMemory: memory }));
  return { qjs, growth, grown: () => memory.buffer.byteLength > initialBytes };
}
