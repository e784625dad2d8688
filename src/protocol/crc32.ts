/**
 * CRC-32 (IEEE 802.3, the one of zlib, gzip and PNG), in plain JavaScript so that the SDK computes
 * it in browsers too. Incremental: `crc32(b, crc32(a)) === crc32(a ++ b)`. The server uses Node's
 * zlib.crc32, which gives the same values faster.
 */

const TABLE = /*@__PURE__*/ (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

export function crc32(data: Uint8Array, previous = 0): number {
  let c = ~previous;
  for (let i = 0; i < data.length; i++) c = TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
