import type { Socket } from 'node:net';
import { connectionError, firstLine, type RedisTarget } from './connection.js';
import { messageOf, RedisBackupError } from './errors.js';
import { RDB_HEADER_SIZE, rdbVersionOf } from './rdb.js';
import { encodeCommand, openSocket } from './resp.js';
import type { Commander } from './server.js';

/** An RDB being pulled from a server over the replication protocol (see {@link openRdbStream}). */
export interface RdbStream {
  /** 'length' ($<n>\r\n then n bytes, disk-based sync) or 'eof' ($EOF:<40-byte mark>\r\n ... mark, diskless sync). */
  framing: 'length' | 'eof';
  /** The declared payload size, for length framing. */
  size?: number;
  /** Whether the server accepted REPLCONF rdb-only (Redis >= 7.0): without it the server streams its replication backlog after the RDB; we stop reading at the RDB's end either way. */
  rdbOnly: boolean;
  /** The RDB payload only (no framing, no EOF mark), with backpressure: the socket is paused while the consumer is slow. Throws RedisBackupError REDIS_PROTOCOL_ERROR when the connection ends before the declared size / before the EOF mark, REDIS_RDB_INVALID when the payload does not start with "REDIS" + 4 digits, REDIS_ABORTED on abort. When the iteration ends early (consumer returns/throws) the socket is destroyed. */
  chunks: AsyncGenerator<Buffer>;
  /** After `chunks` completed: bytes, the RDB version from the header (e.g. 10 for Redis 7.0). */
  result(): { bytes: number; rdbVersion: number };
  /** Destroys the connection (idempotent). */
  close(): void;
}

/** Options of {@link openRdbStream}. */
export interface OpenRdbStreamOptions {
  signal?: AbortSignal | undefined;
  /** No byte from the server for this long → REDIS_TIMEOUT. Time spent waiting for a slow consumer does not count. @default 60000 */
  timeoutMs?: number | undefined;
  /** Called for each newline keep-alive the server sends while it prepares the RDB (forking, or waiting out repl-diskless-sync-delay). */
  onWaiting?: (() => void) | undefined;
}

const DEFAULT_TIMEOUT_MS = 60_000;
/** The socket is paused once this much is read but not yet taken by the consumer. */
const HIGH_WATER_BYTES = 512 * 1024;
/** A handshake reply longer than this is not Redis talking. */
const MAX_LINE_BYTES = 64 * 1024;
/** Diskless sync ends the payload with the same 40 random bytes it announced in `$EOF:`. */
const EOF_MARK_SIZE = 40;

/** Why reading stopped short, before it is turned into an error that fits the phase. */
type Interruption = { kind: 'timeout' } | { kind: 'aborted'; reason: unknown } | { kind: 'error'; error: unknown };

class Interrupted extends Error {
  readonly interruption: Interruption;
  constructor(interruption: Interruption) {
    super(interruption.kind);
    this.interruption = interruption;
  }
}

/**
 * What the socket delivered and the consumer has not taken yet. Reading is pull-based so that
 * the socket can be paused while the consumer is slow: memory stays flat whatever the RDB size.
 */
interface Inbox {
  /** The next chunk, or null once the server has closed the connection. @throws Interrupted */
  read(): Promise<Buffer | null>;
  /** Puts bytes read too far back in front. */
  unread(bytes: Buffer): void;
  /** Stops at once: pending and later reads throw. */
  interrupt(interruption: Interruption): void;
}

function createInbox(socket: Socket, timeoutMs: number): Inbox {
  const queue: Buffer[] = [];
  let queued = 0;
  let paused = false;
  let ended = false;
  // Abort and timeout win over queued data; a socket error only after what arrived before it.
  let interruption: Interruption | undefined;
  let socketError: { error: unknown } | undefined;
  let wake: (() => void) | undefined;

  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  socket.on('data', (chunk: Buffer) => {
    queue.push(chunk);
    queued += chunk.length;
    if (queued >= HIGH_WATER_BYTES && !paused) {
      paused = true;
      socket.pause();
    }
    notify();
  });
  socket.on('end', () => {
    ended = true;
    notify();
  });
  socket.on('close', () => {
    ended = true;
    notify();
  });
  // The listener stays for the socket's life: an 'error' without one would crash the process.
  socket.on('error', (error) => {
    socketError ??= { error };
    notify();
  });

  return {
    async read() {
      for (;;) {
        if (interruption) throw new Interrupted(interruption);
        const chunk = queue.shift();
        if (chunk) {
          queued -= chunk.length;
          if (paused && queued < HIGH_WATER_BYTES) {
            paused = false;
            socket.resume();
          }
          return chunk;
        }
        if (socketError) throw new Interrupted({ kind: 'error', error: socketError.error });
        if (ended) return null;
        if (paused) {
          paused = false;
          socket.resume();
        }
        // Only time spent waiting on the server counts towards the timeout.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            interruption ??= { kind: 'timeout' };
            socket.destroy();
            notify();
          }, timeoutMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
    unread(bytes) {
      if (bytes.length === 0) return;
      queue.unshift(bytes);
      queued += bytes.length;
    },
    interrupt(next) {
      interruption ??= next;
      socket.destroy();
      notify();
    },
  };
}

/** A reply line as text safe to quote in a message: control bytes escaped, length capped. */
function quoteLine(line: Buffer): string {
  const text = Array.from(line.toString('utf8'), (c) => {
    const code = c.charCodeAt(0);
    return code < 0x20 || code === 0x7f ? `\\x${code.toString(16).padStart(2, '0')}` : c;
  }).join('');
  return firstLine(text).slice(0, 200);
}

/**
 * Pulls an RDB snapshot from a running server the way a replica does (AUTH, REPLCONF capa
 * eof/psync2, REPLCONF rdb-only, SYNC), without ioredis: the handshake cannot be pipelined and
 * the reply to SYNC is not RESP. Resolves once the server has announced the payload, so a
 * refusal is thrown before anything is stored. Iterate `chunks` to completion, or call
 * `close()`: a stream whose chunks are never iterated keeps its connection open.
 * @throws RedisBackupError REDIS_SYNC_REFUSED (the server will not sync with us: use the logical
 * export instead), REDIS_AUTH_FAILED, REDIS_CONNECTION_REFUSED, REDIS_UNREACHABLE,
 * REDIS_PROTOCOL_ERROR, REDIS_TIMEOUT, REDIS_ABORTED, REDIS_OPTIONS_INVALID
 */
export async function openRdbStream(target: RedisTarget, options: OpenRdbStreamOptions = {}): Promise<RdbStream> {
  const where = target.description;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0)
    throw new RedisBackupError('REDIS_OPTIONS_INVALID', `timeoutMs must be a positive number of milliseconds, not ${String(timeoutMs)}`);
  const { signal } = options;
  if (signal?.aborted) throw new RedisBackupError('REDIS_ABORTED', `pulling the RDB from ${where} was aborted`, { cause: signal.reason });

  const socket = openSocket(target);
  socket.setNoDelay(true);
  const inbox = createInbox(socket, timeoutMs);
  const onAbort = () => inbox.interrupt({ kind: 'aborted', reason: signal?.reason });
  signal?.addEventListener('abort', onAbort, { once: true });
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    signal?.removeEventListener('abort', onAbort);
    socket.destroy();
  };

  const handshakeError = (error: unknown, step: string): unknown => {
    if (!(error instanceof Interrupted)) return error;
    const i = error.interruption;
    if (i.kind === 'timeout')
      return new RedisBackupError(
        'REDIS_TIMEOUT',
        `${where} did not answer for ${timeoutMs} ms (${step}): is the server overloaded, or is this not Redis?`,
      );
    if (i.kind === 'aborted')
      return new RedisBackupError('REDIS_ABORTED', `pulling the RDB from ${where} was aborted`, { cause: i.reason });
    return connectionError(target, i.error);
  };

  const read = async (step: string): Promise<Buffer> => {
    let chunk: Buffer | null;
    try {
      chunk = await inbox.read();
    } catch (error) {
      throw handshakeError(error, step);
    }
    if (chunk === null)
      throw new RedisBackupError(
        'REDIS_PROTOCOL_ERROR',
        `${where} closed the connection during the replication handshake (${step}) without a reply`,
      );
    return chunk;
  };

  const readLine = async (step: string): Promise<Buffer> => {
    let buffered: Buffer = Buffer.alloc(0);
    for (;;) {
      const end = buffered.indexOf('\r\n');
      if (end >= 0) {
        inbox.unread(buffered.subarray(end + 2));
        return buffered.subarray(0, end);
      }
      if (buffered.length > MAX_LINE_BYTES)
        throw new RedisBackupError(
          'REDIS_PROTOCOL_ERROR',
          `${where} sent a reply line longer than ${MAX_LINE_BYTES} bytes (${step}): is this a Redis server?`,
        );
      const chunk = await read(step);
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    }
  };

  const refused = (line: Buffer, step: string) =>
    new RedisBackupError(
      'REDIS_SYNC_REFUSED',
      `${where} refused to replicate to drkit (${step}: "${quoteLine(line)}"): SYNC is disabled, renamed, not granted to this user, or the server is a replica or a managed service that does not allow it; use the logical export instead`,
      { details: { reply: quoteLine(line) } },
    );

  const isAuthError = (text: string) => /^-(NOAUTH|WRONGPASS)\b/.test(text);

  /** Sends one command and returns its one-line reply (`+...` or `-...`). */
  const command = async (args: readonly (string | Buffer)[], step: string): Promise<Buffer> => {
    socket.write(encodeCommand(args));
    const line = await readLine(step);
    const type = line[0];
    if (type !== 0x2b /* + */ && type !== 0x2d /* - */)
      throw new RedisBackupError(
        'REDIS_PROTOCOL_ERROR',
        `${where} answered ${step} with "${quoteLine(line)}", not a status or an error: is this a Redis server?`,
      );
    return line;
  };

  try {
    if (target.password !== undefined) {
      const args = target.username ? ['AUTH', target.username, target.password] : ['AUTH', target.password];
      const reply = await command(args, 'AUTH');
      const text = reply.toString('utf8');
      // Like ioredis: a password the server does not need is not an error.
      if (text.startsWith('-') && !/without any password configured|no password is set/i.test(text))
        throw connectionError(target, new Error(text.slice(1)));
    }

    const capa = await command(['REPLCONF', 'capa', 'eof', 'capa', 'psync2'], 'REPLCONF capa');
    if (capa[0] === 0x2d) {
      const text = capa.toString('utf8');
      throw isAuthError(text) ? connectionError(target, new Error(text.slice(1))) : refused(capa, 'REPLCONF capa');
    }

    // Older servers reject rdb-only: they then stream their backlog after the RDB, which is ignored.
    const rdbOnlyReply = await command(['REPLCONF', 'rdb-only', '1'], 'REPLCONF rdb-only');
    const rdbOnly = rdbOnlyReply[0] === 0x2b;

    socket.write(encodeCommand(['SYNC']));
    let header: Buffer | undefined;
    while (header === undefined) {
      const chunk = await read('waiting for the RDB');
      let start = 0;
      while (start < chunk.length && chunk[start] === 0x0a) {
        start++;
        try {
          options.onWaiting?.();
        } catch {
          // A broken progress display must not fail the backup.
        }
      }
      if (start === chunk.length) continue;
      inbox.unread(chunk.subarray(start));
      header = await readLine('SYNC');
    }

    const text = header.toString('latin1');
    let framing: RdbStream['framing'];
    let size: number | undefined;
    let mark: Buffer | undefined;
    if (header[0] === 0x2d) {
      throw isAuthError(text) ? connectionError(target, new Error(text.slice(1))) : refused(header, 'SYNC');
    } else if (text.startsWith('$EOF:') && header.length === 5 + EOF_MARK_SIZE) {
      framing = 'eof';
      mark = Buffer.from(header.subarray(5));
    } else if (/^\$\d{1,15}$/.test(text)) {
      framing = 'length';
      size = Number(text.slice(1));
    } else {
      throw new RedisBackupError('REDIS_PROTOCOL_ERROR', `${where} answered SYNC with "${quoteLine(header)}", not an RDB transfer`);
    }

    let bytes = 0;
    let rdbVersion: number | undefined;
    let pendingHeader: Buffer | undefined = Buffer.alloc(0);
    let completed = false;

    const payloadError = (error: unknown): unknown => {
      if (!(error instanceof Interrupted)) return error;
      const i = error.interruption;
      if (i.kind === 'timeout')
        return new RedisBackupError(
          'REDIS_TIMEOUT',
          `${where} sent nothing for ${timeoutMs} ms while streaming the RDB (after ${bytes} bytes)`,
        );
      if (i.kind === 'aborted')
        return new RedisBackupError('REDIS_ABORTED', `pulling the RDB from ${where} was aborted after ${bytes} bytes`, { cause: i.reason });
      return new RedisBackupError(
        'REDIS_PROTOCOL_ERROR',
        `the connection to ${where} broke after ${bytes} bytes of the RDB (${messageOf(i.error)}): the RDB is incomplete`,
        { cause: i.error },
      );
    };
    const next = async (): Promise<Buffer | null> => {
      try {
        return await inbox.read();
      } catch (error) {
        throw payloadError(error);
      }
    };
    /** The payload as it may be handed on: nothing until the RDB header has been checked. */
    const release = (piece: Buffer): Buffer | undefined => {
      bytes += piece.length;
      if (pendingHeader === undefined) return piece;
      pendingHeader = pendingHeader.length === 0 ? piece : Buffer.concat([pendingHeader, piece]);
      if (pendingHeader.length < RDB_HEADER_SIZE) return undefined;
      rdbVersion = rdbVersionOf(pendingHeader);
      const out = pendingHeader;
      pendingHeader = undefined;
      return out;
    };

    async function* payload(): AsyncGenerator<Buffer> {
      try {
        if (framing === 'length') {
          const total = size as number;
          let remaining = total;
          while (remaining > 0) {
            const chunk = await next();
            if (chunk === null)
              throw new RedisBackupError(
                'REDIS_PROTOCOL_ERROR',
                `${where} closed the connection after ${total - remaining} of ${total} bytes of the RDB: the RDB is incomplete`,
              );
            // Whatever follows the payload is the replication stream, which a backup does not want.
            const piece = chunk.length > remaining ? chunk.subarray(0, remaining) : chunk;
            remaining -= piece.length;
            const out = release(piece);
            if (out) yield out;
          }
        } else {
          const eofMark = mark as Buffer;
          // The last bytes read may be the start of the mark: they are held back until more come.
          let held: Buffer = Buffer.alloc(0);
          for (;;) {
            const chunk = await next();
            if (chunk === null)
              throw new RedisBackupError(
                'REDIS_PROTOCOL_ERROR',
                `${where} closed the connection after ${bytes + held.length} bytes of the RDB without its end mark: the RDB is incomplete`,
              );
            const data = held.length === 0 ? chunk : Buffer.concat([held, chunk]);
            const at = data.indexOf(eofMark);
            if (at >= 0) {
              const out = at > 0 ? release(data.subarray(0, at)) : undefined;
              if (out) yield out;
              break;
            }
            if (data.length > EOF_MARK_SIZE) {
              // A copy, so the held bytes do not pin the whole chunk in memory.
              held = Buffer.from(data.subarray(data.length - EOF_MARK_SIZE));
              const out = release(data.subarray(0, data.length - EOF_MARK_SIZE));
              if (out) yield out;
            } else {
              held = data;
            }
          }
        }
        if (pendingHeader !== undefined) rdbVersionOf(pendingHeader);
        completed = true;
      } finally {
        // The RDB is complete (or abandoned): the server must see this replica go away.
        close();
      }
    }

    const stream: RdbStream = {
      framing,
      rdbOnly,
      chunks: payload(),
      result() {
        if (!completed || rdbVersion === undefined)
          throw new Error('RdbStream.result() is only known once chunks have been read to the end');
        return { bytes, rdbVersion };
      },
      close,
    };
    if (size !== undefined) stream.size = size;
    return stream;
  } catch (error) {
    close();
    throw error;
  }
}

/** How a server's diskless replication will shape a pull, and what to tell the user about it. */
export interface ReplicationSettings {
  disklessSync?: boolean;
  disklessSyncDelaySeconds?: number;
  warning?: string;
}

/**
 * Reads repl-diskless-sync and repl-diskless-sync-delay, to warn before a pull that would sit
 * idle: with diskless sync the server waits out the delay for other replicas before it forks.
 * Managed services often refuse CONFIG: then nothing is known and `{}` is returned.
 */
export async function replicationSettings(client: Commander): Promise<ReplicationSettings> {
  let diskless: unknown;
  let delay: unknown;
  try {
    [diskless, delay] = await Promise.all([
      client.call('CONFIG', 'GET', 'repl-diskless-sync'),
      client.call('CONFIG', 'GET', 'repl-diskless-sync-delay'),
    ]);
  } catch {
    return {};
  }
  const settingOf = (reply: unknown): string | undefined => {
    if (!Array.isArray(reply) || reply.length < 2) return undefined;
    const value: unknown = reply[1];
    return typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('utf8') : undefined;
  };
  const settings: ReplicationSettings = {};
  const disklessText = settingOf(diskless)?.toLowerCase();
  if (disklessText === 'yes' || disklessText === 'no') settings.disklessSync = disklessText === 'yes';
  const delayText = settingOf(delay);
  if (delayText !== undefined && /^\d+$/.test(delayText)) settings.disklessSyncDelaySeconds = Number(delayText);
  const seconds = settings.disklessSyncDelaySeconds;
  if (settings.disklessSync && seconds !== undefined && seconds >= 1) {
    settings.warning =
      `the server uses diskless replication with repl-diskless-sync-delay ${seconds}: the pull will wait about ${seconds} s before the server starts sending the RDB ` +
      `(CONFIG SET repl-diskless-sync-delay 0 removes the wait, at the cost of replicas that join together no longer sharing one transfer)`;
  }
  return settings;
}
