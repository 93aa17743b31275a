import { Inflate, inflateSync } from "fflate";

/**
 * Inflates one raw-deflate entry in plain JavaScript (fflate), never through node:zlib. A zlib call
 * makes a native handle, and on Node 24 a scan thread stopped at its heap limit between the
 * handle's making and its initialisation aborts the whole process ("close before init" in
 * node_zlib.cc): the service or CLI died instead of the scan failing. fflate holds no native state.
 *
 * Returns at most `declared + 1` bytes, so the caller sees an entry that inflates past what its
 * header declares without inflating all of it, and the work stays bounded by the input: a small
 * input is inflated at once into a buffer that cannot grow (at most ~1,000 output symbols per input
 * byte are decoded), a larger one in slices, stopping after the slice that passed the declared size.
 */
export function inflateRawBounded(raw: Uint8Array, declared: number): Buffer {
  // fflate hands back its output buffer, all of it, for empty input.
  if (raw.length === 0) throw new Error("no deflate data");
  if (raw.length <= SLICE) return asBuffer(inflateSync(raw, { out: new Uint8Array(declared + 1) }));
  const chunks: Uint8Array[] = [];
  let size = 0;
  const inflater = new Inflate((chunk) => {
    chunks.push(chunk);
    size += chunk.length;
  });
  const slice = sliceFor(declared);
  for (let at = 0; at < raw.length && size <= declared; at += slice) inflater.push(raw.subarray(at, at + slice), at + slice >= raw.length);
  return Buffer.concat(chunks, Math.min(size, declared + 1));
}

// 64 KiB of deflate decodes to at most ~66 MB (deflate's ratio tops out near 1,032:1): the largest
// input inflated at once, into a buffer of the declared size that cannot grow.
const SLICE = 64 * 1024;

/**
 * Slices of a larger input, sized to the declared size between 16 KiB and 64 KiB: what the last slice
 * inflates past that size stays near max(declared, 16 MB), where a 64 KiB slice could inflate 66 MB
 * (and fflate's doubling output buffer held 200 MB) for an entry declaring a kilobyte. Smaller slices
 * would bound it further at a price on honest entries: fflate copies its window on every call
 * (a 3 MB nested jar inflated in 1 KiB slices took 186 ms, in 16 KiB 51 ms, in 64 KiB 40 ms).
 */
const sliceFor = (declared: number) => Math.min(SLICE, Math.max(16 * 1024, Math.ceil(declared / 1024)));

const asBuffer = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.length);
