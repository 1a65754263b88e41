/** What stands in for a secret wherever text leaves the process. */
export const REDACTED = '[redacted]';

/**
 * Knows the secret values of a run and removes them from text and from JSON-like values.
 * Every sink (journal, log, report, notification, error message) goes through one of these,
 * so a secret is redacted at the source rather than trusted not to be printed.
 *
 * Besides the value itself it removes the forms a value is commonly passed on in: URL
 * encoding (a password in a connection URL), base64 (a basic-auth header) and JSON string
 * escaping.
 */
export class Redactor {
  readonly #needles = new Set<string>();
  #sorted: string[] = [];

  /** Registers a secret value; values shorter than 4 characters would redact ordinary text, so they are refused. */
  add(value: string): void {
    if (value.length < 4) throw new Error('a secret shorter than 4 characters cannot be redacted reliably');
    const forms = [
      value,
      encodeURIComponent(value),
      Buffer.from(value).toString('base64'),
      Buffer.from(value).toString('base64url'),
      JSON.stringify(value).slice(1, -1),
    ];
    for (const form of forms) if (form.length >= 4) this.#needles.add(form);
    // Longest first, so a value that contains another is removed whole.
    this.#sorted = [...this.#needles].sort((a, b) => b.length - a.length);
  }

  /** How many secret values (with their encodings) are known. */
  get size(): number {
    return this.#needles.size;
  }

  /** `text` with every known secret replaced by {@link REDACTED}. */
  text(text: string): string {
    let out = text;
    for (const needle of this.#sorted) if (out.includes(needle)) out = out.split(needle).join(REDACTED);
    return out;
  }

  /** A deep copy of a JSON-like value with every string redacted (keys included). */
  value<T>(value: T): T {
    return this.#walk(value, new WeakSet()) as T;
  }

  #walk(value: unknown, seen: WeakSet<object>): unknown {
    if (typeof value === 'string') return this.text(value);
    if (value === null || typeof value !== 'object') return value;
    if (seen.has(value)) return '[circular]';
    seen.add(value);
    if (Array.isArray(value)) return value.map((v) => this.#walk(v, seen));
    if (value instanceof Date) return value;
    if (value instanceof Error) return { name: value.name, message: this.text(value.message) };
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[this.text(k)] = this.#walk(v, seen);
    return out;
  }
}
