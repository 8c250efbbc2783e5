// Turns benchmark JSON results into one Markdown table with the targets beside them.
const fs = require("node:fs");
const rows = process.argv.slice(2).map((f) => JSON.parse(fs.readFileSync(f, "utf8")));
const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : "—");
// A round whose load filled the room admission found ("1:max" in scripts/bench) says so.
const label = (r) =>
  `${r.sessions} (${r.browsers} + ${r.sessions - r.browsers}${r.atCapacity ? `, admission's limit; ${r.extraAtEnd} at the end` : ""})`;
const lines = [
  "| sessions (browser + load) | latency p50 s (≤0.25 alone, ≤0.35 at load) | p95 s (≤0.35 alone) | fps in | fps out | player fps (presented) | frames the player skipped % (its timeline; ≤1) | camera preview frames skipped % (control) | player frames dropped % (Chromium's count) | dropped by server | stalls after warm-up (waits / episodes) | player behind edge s (target) | detect ms | decode ms/frame | encode ms/frame | bitrate kbit/s | server RSS MB | RSS drift % | CPU % (server / all) | files written | per-frame files |",
  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
];
for (const r of rows) {
  lines.push(
    `| ${label(r)} | ${f(r.latencyP50)} | ${f(r.latencyP95)} | ${f(r.fpsIn, 1)} | ${f(r.fpsOut, 1)} | ${f(r.playerFps, 1)} | ${f(r.skippedPct)} | ${f(r.previewSkippedPct)} | ${f(r.playerDroppedPct)} | ${r.serverDropped} | ${r.stalls} / ${r.stallEpisodes ?? "—"} | ${f(r.playerEdgeS)} (${f(r.playerTargetS)}) | ${f(r.detectMsMedian, 1)} | ${f(r.decodeMsPerFrame, 1)} | ${f(r.encodeMsPerFrame, 1)} | ${f(r.kbitPerSecond, 0)} | ${f(r.rssMbMax, 1)} | ${f(r.rssDriftPct, 1)} | ${f(r.serverCpuPct, 0)} / ${f(r.totalCpuPct, 0)} | ${r.filesWritten} | ${r.perFrameFiles} |`,
  );
}
lines.push(
  "",
  // Long-animation-frame entries in the measuring page(s): frames rendered ≥ 50 ms late, and
  // those in which the page's own scripts ran ≥ 16 ms (the rest the browser held up itself).
  `Page frames rendered ≥ 50 ms late (of them, with ≥ 16 ms of the page's own script): ${rows
    .map((r) => (Number.isFinite(r.lateFrames) ? `${r.lateFrames} (${r.lateFramesScript})` : "—"))
    .join(", ")}.`,
);
// The camera preview: painted into a canvas (one video layer on the page) or, as a fallback,
// its own video (app/src/preview_mode.rs); older results have no such field.
lines.push("", `Camera preview shown as: ${rows.map((r) => r.previewShown ?? "video (before the canvas preview)").join("; ")}.`);
lines.push("", `Measured over ${rows.map((r) => Math.round(r.seconds) + " s").join(", ")} after warm-up; latency samples: ${rows.map((r) => r.latencySamples).join(", ")}.`);
// Start-up: Start pressed → first output frame on screen, and latency over the first seconds
// after it (the player must join at the live edge, not catch up on a backlog).
if (rows.some((r) => r.firstFrameS !== undefined)) {
  lines.push(
    "",
    "| sessions (browser + load) | Start → first output frame s (≤1.0) | latency over the first 20 s p50 s | p95 s (≤0.5) |",
    "|---|---|---|---|",
  );
  for (const r of rows) {
    lines.push(`| ${label(r)} | ${f(r.firstFrameS)} | ${f(r.startP50)} | ${f(r.startP95)} |`);
  }
}
// The latency budget: where the glass-to-glass time of the same frames went, stage by stage
// (the first browser session of each round), beside the WebRTC floor the issue measured.
for (const r of rows.filter((r) => r.budget && r.budget.matched > 0)) {
  const b = r.budget;
  lines.push(
    "",
    `Latency budget, ${label(r)} session(s): ${b.matched} of ${b.samples} latency samples matched to the server's times of the same frame.`,
    "",
    "| stage | mean ms | p50 ms | p95 ms |",
    "|---|---|---|---|",
  );
  for (const [name, mean, p50, p95] of b.rows) lines.push(`| ${name} | ${f(mean, 0)} | ${f(p50, 0)} | ${f(p95, 0)} |`);
  lines.push(
    `| of the part → shown: the player's distance behind the newest part (hls.js, median) | | ${f(b.holdBackMs, 0)} | |`,
    "| WebRTC floor for comparison: aiortc peer, same clip and machine kind (issue 26's measurement, not re-run here) | | 100 | 130 |",
  );
  // Where the frames after each stall lost their time (the largest of each stage over the
  // frames shown in the second after the wait), against the p95s above.
  if (b.stalls && b.stalls.length) {
    lines.push(
      "",
      "| stall at (page s) | camera → decoded ms | frame path ms | encoder + packager ms | part → shown ms | glass to glass ms |",
      "|---|---|---|---|---|---|",
    );
    for (const [t, ...max] of b.stalls) lines.push(`| ${f(t, 1)} | ${max.map((m) => f(m, 0)).join(" | ")} |`);
  }
}
console.log(lines.join("\n"));
