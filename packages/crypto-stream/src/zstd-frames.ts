import type { Duplex } from 'node:stream';
import zlib from 'node:zlib';
import { through } from './source.js';

// Node's zstd decoder stops at the end of the first frame and silently ignores what follows,
// while zstd content may be several frames (RFC 8878 §3.1; Node's own compressor writes an
// extra empty frame when it is fed in pieces). This splitter finds frame boundaries as bytes
// stream past, so that each frame gets a decoder of its own and nothing is dropped.

const ZSTD_MAGIC = 0xfd2fb528;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;

/** A run of input bytes that belongs to one frame. */
export interface FrameSegment {
  bytes: Buffer;
  /** The frame ends with this segment. */
  end: boolean;
  /** Part of a skippable frame: carries no content. */
  skippable: boolean;
}

type State = 'magic' | 'descriptor' | 'header' | 'blockHeader' | 'blockBody' | 'checksum' | 'skipSize' | 'skipBody';

/** Splits a zstd byte stream into frame segments, checking the frame structure as it goes. */
export class ZstdFrameSplitter {
  #state: State = 'magic';
  #need = 4;
  #field = Buffer.alloc(16);
  #fieldFill = 0;
  #checksum = false;
  #lastBlock = false;
  #skippable = false;

  /** True when the bytes so far end exactly at a frame boundary. */
  get atBoundary(): boolean {
    return this.#state === 'magic' && this.#fieldFill === 0;
  }

  /** Splits `piece` into segments; throws on bytes that are not a zstd frame. */
  push(piece: Buffer): FrameSegment[] {
    const segments: FrameSegment[] = [];
    let start = 0;
    let at = 0;
    const cut = (end: boolean) => {
      if (at > start || end) segments.push({ bytes: piece.subarray(start, at), end, skippable: this.#skippable });
      start = at;
    };
    while (at < piece.length) {
      if (this.#state === 'blockBody' || this.#state === 'skipBody') {
        const n = Math.min(this.#need, piece.length - at);
        at += n;
        this.#need -= n;
        if (this.#need === 0) this.#afterBody(cut);
        continue;
      }
      // Small fixed fields are gathered byte by byte (they may straddle pieces).
      this.#field[this.#fieldFill++] = piece[at++] as number;
      if (this.#fieldFill < this.#need) continue;
      const field = this.#field.subarray(0, this.#need);
      this.#fieldFill = 0;
      this.#onField(field, cut);
    }
    cut(false);
    return segments.filter((s) => s.bytes.length > 0 || s.end);
  }

  #expect(state: State, bytes: number): undefined {
    this.#state = state;
    this.#need = bytes;
  }

  #onField(field: Buffer, cut: (end: boolean) => void): undefined {
    switch (this.#state) {
      case 'magic': {
        const magic = field.readUInt32LE(0);
        if (magic === ZSTD_MAGIC) {
          this.#skippable = false;
          return this.#expect('descriptor', 1);
        }
        if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
          this.#skippable = true;
          return this.#expect('skipSize', 4);
        }
        throw new Error('bytes that are not a zstd frame follow the compressed data');
      }
      case 'descriptor': {
        const d = field.readUInt8(0);
        const fcsFlag = d >> 6;
        const singleSegment = (d >> 5) & 1;
        if ((d >> 3) & 1) throw new Error('zstd frame header has its reserved bit set');
        this.#checksum = ((d >> 2) & 1) === 1;
        const dictionaryBytes = [0, 1, 2, 4][d & 3] as number;
        const contentSizeBytes = fcsFlag === 0 ? singleSegment : ([0, 2, 4, 8][fcsFlag] as number);
        const rest = (singleSegment ? 0 : 1) + dictionaryBytes + contentSizeBytes;
        return rest === 0 ? this.#expect('blockHeader', 3) : this.#expect('header', rest);
      }
      case 'header':
        return this.#expect('blockHeader', 3);
      case 'blockHeader': {
        const h = field.readUIntLE(0, 3);
        this.#lastBlock = (h & 1) === 1;
        const type = (h >> 1) & 3;
        if (type === 3) throw new Error('zstd block of reserved type');
        const size = type === 1 ? 1 : h >>> 3;
        if (size === 0) return this.#afterBody(cut);
        return this.#expect('blockBody', size);
      }
      case 'checksum':
        this.#expect('magic', 4);
        cut(true);
        return;
      case 'skipSize': {
        const size = field.readUInt32LE(0);
        if (size === 0) {
          this.#expect('magic', 4);
          cut(true);
          return;
        }
        return this.#expect('skipBody', size);
      }
      default:
        throw new Error(`zstd splitter in an impossible state ${this.#state}`);
    }
  }

  #afterBody(cut: (end: boolean) => void): undefined {
    if (this.#state === 'skipBody') {
      this.#expect('magic', 4);
      cut(true);
      return;
    }
    if (!this.#lastBlock) return this.#expect('blockHeader', 3);
    if (this.#checksum) return this.#expect('checksum', 4);
    this.#expect('magic', 4);
    cut(true);
  }
}

/**
 * Decompresses zstd content of one or more frames, streaming: each frame's bytes go to a
 * decoder of its own (`first`, if given, serves the first frame). Throws on content that is not whole zstd frames (no frame, bytes that
 * are not a frame, a frame cut short).
 */
export async function* zstdDecompressFrames(input: AsyncIterable<Buffer>, first?: Duplex): AsyncGenerator<Buffer> {
  let decoder = first;
  const iterator = input[Symbol.asyncIterator]();
  const splitter = new ZstdFrameSplitter();
  const queue: FrameSegment[] = [];
  let inputDone = false;
  const fill = async (): Promise<boolean> => {
    while (queue.length === 0 && !inputDone) {
      const next = await iterator.next();
      if (next.done) inputDone = true;
      else queue.push(...splitter.push(next.value));
    }
    return queue.length > 0;
  };
  let frames = 0;
  while (await fill()) {
    const skippable = queue[0]?.skippable === true;
    const frame = (async function* () {
      for (;;) {
        if (!(await fill())) return;
        const segment = queue.shift() as FrameSegment;
        if (segment.bytes.length > 0) yield segment.bytes;
        if (segment.end) return;
      }
    })();
    if (skippable) {
      for await (const _ of frame) {
        // skippable frames carry nothing
      }
      continue;
    }
    frames++;
    yield* through(frame, decoder ?? zlib.createZstdDecompress({ chunkSize: 256 * 1024 }));
    decoder = undefined;
  }
  if (!splitter.atBoundary) throw new Error('the zstd content ends inside a frame');
  if (frames === 0) throw new Error('the zstd content holds no frame');
}
