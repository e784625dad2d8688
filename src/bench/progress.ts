/**
 * The live progress line of `hubbub bench`: redrawn in place on a terminal (at most 10 times a
 * second), and on anything else printed only when the phase changes, so logs stay readable.
 */
export class Progress {
  private lastDraw = 0;
  private lastLabel = '';
  private drawn = false;
  constructor(
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly enabled = true,
  ) {}

  private get tty(): boolean {
    return this.out.isTTY === true;
  }

  /** Show `label` with a bar for `fraction` (0…1, or undefined for no bar) and a detail text. */
  update(label: string, fraction: number | undefined, detail: string): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (!this.tty) {
      if (label !== this.lastLabel) this.out.write(`${label}…\n`);
      this.lastLabel = label;
      return;
    }
    if (label === this.lastLabel && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    this.lastLabel = label;
    const width = 24;
    let bar = '';
    if (fraction !== undefined) {
      const f = Math.max(0, Math.min(1, fraction));
      const full = Math.round(f * width);
      bar = `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${(f * 100).toFixed(0).padStart(3)}% `;
    }
    const cols = this.out.columns ?? 100;
    this.out.write(`\r\x1b[K${`${label} ${bar}${detail}`.slice(0, cols - 1)}`);
    this.drawn = true;
  }

  /** Clear the line (terminal) before printing something else. */
  clear(): void {
    if (this.drawn && this.tty) this.out.write('\r\x1b[K');
    this.drawn = false;
  }
}
