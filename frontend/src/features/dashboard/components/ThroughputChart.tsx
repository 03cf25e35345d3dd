import { count } from "../../../lib/format";

interface ThroughputChartProps {
  data: { hour: string; decisions: number }[];
}

const WIDTH = 720;
const HEIGHT = 220;
const PAD = { top: 16, right: 12, bottom: 28, left: 40 };

function hourLabel(iso: string): string {
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? "" : String(t.getHours()).padStart(2, "0");
}

// A round axis maximum (2, 4 or 10 × 10^n, at least 4) whose half is a whole number too.
export function niceMax(value: number): number {
  if (value <= 4) return 4;
  const power = 10 ** Math.floor(Math.log10(value));
  const step = [1, 2, 4, 10].find((m) => m * power >= value) ?? 10;
  const max = step * power;
  return max % 2 === 0 ? max : max * 2;
}

/** Decisions per hour over the last 24 hours as a plain SVG bar chart. */
export function ThroughputChart({ data }: ThroughputChartProps) {
  const max = niceMax(Math.max(0, ...data.map((d) => d.decisions)));
  const innerW = WIDTH - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const slot = data.length > 0 ? innerW / data.length : innerW;
  const bar = Math.max(2, slot * 0.7);
  const total = data.reduce((sum, d) => sum + d.decisions, 0);
  const ticks = [0, max / 2, max];

  return (
    <figure className="chart">
      <svg
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        role="img"
        aria-label={`Decisions per hour over the last 24 hours, ${count(total)} in all`}
        preserveAspectRatio="xMidYMid meet"
      >
        {ticks.map((t) => {
          const y = PAD.top + innerH - (t / max) * innerH;
          return (
            <g key={t} className="chart-grid">
              <line x1={PAD.left} x2={WIDTH - PAD.right} y1={y} y2={y} />
              <text x={PAD.left - 6} y={y + 4} textAnchor="end">
                {count(t)}
              </text>
            </g>
          );
        })}
        {data.map((d, i) => {
          const h = (d.decisions / max) * innerH;
          const x = PAD.left + i * slot + (slot - bar) / 2;
          return (
            <g key={d.hour}>
              <rect
                className="chart-bar"
                data-testid="throughput-bar"
                x={x}
                y={PAD.top + innerH - h}
                width={bar}
                height={Math.max(0, h)}
                rx={2}
              >
                <title>{`${hourLabel(d.hour)}:00 — ${count(d.decisions)} decisions`}</title>
              </rect>
              {i % 3 === 0 && (
                <text className="chart-axis" x={x + bar / 2} y={HEIGHT - 8} textAnchor="middle">
                  {hourLabel(d.hour)}
                </text>
              )}
            </g>
          );
        })}
      </svg>
      <figcaption className="muted">Decisions per hour, last 24 hours (local time)</figcaption>
    </figure>
  );
}
