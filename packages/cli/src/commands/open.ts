import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { inspectSealed, type OpenOptions, open, type SealedInfo } from '@drkit/crypto-stream';
import { defineCommand } from '../command.js';
import { EXIT } from '../errors.js';
import { KEY_SOURCES_HELP, loadCommandKeys } from '../keys.js';
import { checkInput, checkOutput, inputStream, plural, requiredPath, seconds, shown, toStdout, writeFileAtomically } from './seal.js';

/** Bytes kept from the start of the input to describe its header afterwards (a header is < 300 bytes). */
const HEAD_BYTES = 4096;
/** AES-GCM tag after every chunk. */
const TAG_BYTES = 16;

/** Passes the input through, counting its bytes and keeping its first bytes for the summary. */
function counted(source: Readable) {
  const head: Buffer[] = [];
  let headLength = 0;
  let bytes = 0;
  const stream = (async function* () {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      if (headLength < HEAD_BYTES) {
        head.push(Buffer.from(chunk.subarray(0, HEAD_BYTES - headLength)));
        headLength += Math.min(chunk.length, HEAD_BYTES - headLength);
      }
      bytes += chunk.length;
      yield chunk;
    }
  })();
  return {
    stream,
    bytes: () => bytes,
    /** The header of a stream that opened (so it parses). */
    info: (): Promise<SealedInfo> => inspectSealed(Buffer.concat(head)),
  };
}

/** `drkit open`: authenticate, decrypt and decompress a sealed stream. */
export const openCommand = defineCommand({
  path: ['open'],
  summary: 'authenticate and decrypt a sealed stream (file or stdin) back into the original bytes',
  options: {
    in: { type: 'string', value: 'FILE', description: "the sealed file; '-' reads stdin" },
    out: { type: 'string', value: 'FILE', description: "where the opened bytes go; '-' writes stdout (see below: prefer a file)" },
    'key-file': {
      type: 'string',
      value: 'FILE',
      description: 'key file: one key per line (base64 or hex, optionally "<id> <key>"); any of them may open',
    },
    force: { type: 'boolean', description: 'replace --out if it already exists' },
  },
  details: `
With --out FILE, the file appears only after the last chunk has authenticated: the bytes go to
a temp file in the same directory that is renamed into place (mode 0600) at the end. A tampered,
truncated or wrongly keyed input leaves no file and exits 1 with one line naming the cause
(drkit: error SEAL_<CODE>: ...). An existing --out is never replaced without --force (exit 3).

With --out -, plaintext streams to stdout as each chunk authenticates, before the end of the
input has been checked: if a later chunk fails, what was written is authentic but incomplete,
and the command exits 1. Check the exit code before using the output, or prefer --out FILE.

${KEY_SOURCES_HELP}

Examples:
  drkit open --in db.dump.sealed --out db.dump
  drkit open --in mydb.dump.sealed --out mydb.dump && pg_restore -d mydb mydb.dump`,
  async run({ options, io, signal }) {
    const inPath = requiredPath(options.in, '--in', 'open');
    const outPath = requiredPath(options.out, '--out', 'open');
    const input = await checkInput(inPath);
    const refusal = await checkOutput(outPath, input, options.force);
    if (refusal) {
      io.stderr.write(`drkit: refused: ${refusal}\n`);
      return EXIT.REFUSED;
    }
    const keys = await loadCommandKeys(options['key-file'], io.env);

    const source = counted(inputStream(inPath, io, signal));
    let plainBytes = 0;
    const openOptions: OpenOptions = {
      keys,
      signal,
      onProgress: (p) => {
        plainBytes = p.plainBytes;
      },
    };
    const started = performance.now();
    const opened = open(source.stream, openOptions);
    if (outPath === '-') await toStdout(opened, io, signal);
    else await writeFileAtomically(outPath, opened, { replace: options.force === true, signal });

    const info = await source.info();
    const sealedBytes = source.bytes();
    // Every chunk but the last is a full record; the last is shorter (possibly just its tag).
    const chunks = Math.floor((sealedBytes - info.headerLength) / (info.chunkSize + TAG_BYTES)) + 1;
    io.stderr.write(
      `drkit: opened ${shown(inPath, 'in')} -> ${shown(outPath, 'out')}: ${sealedBytes} bytes in, ${plainBytes} bytes out, ` +
        `${plural(chunks, 'chunk')}, ${info.compression === 'none' ? 'no compression' : info.compression}, key ${info.keyId}, ${seconds(started)}\n`,
    );
    return EXIT.OK;
  },
});
