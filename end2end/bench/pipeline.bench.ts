/**
 * hls-face benchmark: N browser sessions (Chromium fake camera with the frame-code clip)
 * against a running server; measures glass-to-glass latency in the page, player fps and
 * skipped frames and stalls, server-side stage costs from /proc, RSS, CPU, output bitrate and
 * files written.
 * Driven by scripts/bench, which passes SERVER_PID, RUNTIME_DIR, SESSIONS, DURATION, OUT.
 */
import { test, type Page } from "@playwright/test";
import fs from "node:fs";
import path from "node:path";
import { Studio } from "../tests/fixtures/studio";

const SESSIONS = Number(process.env.SESSIONS ?? 1);
/** Load-client sessions running beside the measured browser sessions; "max": as many as
 * admission let in (scripts/bench opens them one at a time until one is refused), read
 * from the server's /metrics when the warm-up ends. */
const AT_CAPACITY = process.env.EXTRA_SESSIONS === "max";
let EXTRA = AT_CAPACITY ? 0 : Number(process.env.EXTRA_SESSIONS ?? 0);
const DURATION = Number(process.env.DURATION ?? 60);
const WARMUP = Number(process.env.WARMUP ?? 10);
const SERVER_PID = Number(process.env.SERVER_PID);
const RUNTIME_DIR = process.env.RUNTIME_DIR ?? "";
const OUT = process.env.OUT ?? "../results/bench.json";
const TICK = Number(process.env.CLK_TCK ?? 100);

/** Sessions the server has live now (its /metrics). */
async function liveSessions(): Promise<number> {
  const text = await (await fetch(`${process.env.BASE_URL}/metrics`)).text();
  return Number(/^hls_face_sessions_live (\d+)/m.exec(text)?.[1] ?? NaN);
}

interface ProcSample { cpuTicks: number; rssKb: number }

function proc(pid: number): ProcSample | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const cpuTicks = Number(fields[11]) + Number(fields[12]);
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    return { cpuTicks, rssKb };
  } catch {
    return null;
  }
}

/** The server's ffmpeg children by stage. */
function children(pid: number): { pid: number; stage: "decoder" | "encoder" }[] {
  const out: { pid: number; stage: "decoder" | "encoder" }[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== pid) continue;
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8");
      if (cmd.includes("libx264")) out.push({ pid: Number(entry), stage: "encoder" });
      else if (cmd.includes("-probesize")) out.push({ pid: Number(entry), stage: "decoder" });
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Every file the sessions wrote, with its size (segments are kept for the recording). */
function filesIn(dir: string, seen: Map<string, number>) {
  if (!dir || !fs.existsSync(dir)) return;
  for (const session of fs.readdirSync(dir)) {
    const sdir = path.join(dir, session);
    try {
      if (!fs.statSync(sdir).isDirectory()) continue;
      for (const f of fs.readdirSync(sdir)) seen.set(`${session}/${f}`, fs.statSync(path.join(sdir, f)).size);
    } catch {
      /* removed meanwhile */
    }
  }
}

function quantile(xs: number[], q: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.round((s.length - 1) * q)];
}

const median = (xs: number[]) => quantile(xs, 0.5);

/** Bytes of the complete segments written so far (the encoder's output). */
const segmentBytes = (files: Map<string, number>) =>
  [...files].filter(([f]) => /\/seg_\d+\.m4s$/.test(f)).reduce((a, [, n]) => a + n, 0);

test(`pipeline with ${SESSIONS} browser and ${EXTRA} load session(s) for ${DURATION}s`, async ({ browser }) => {
  const contexts = await Promise.all(Array.from({ length: SESSIONS }, () => browser.newContext()));
  const pages: Page[] = await Promise.all(contexts.map((c) => c.newPage()));
  const studios = pages.map((p) => new Studio(p));
  // MEASURE="measure=quality" leaves the page's frame-code probe out (no latency figures).
  await Promise.all(studios.map((s) => s.open(`/?${process.env.MEASURE ?? "measure"}`)));
  // Start-up: when Start was pressed (the first click on the page, on the page's clock).
  await Promise.all(
    pages.map((p) =>
      p.evaluate(() => {
        const w = window as any;
        document.addEventListener("click", () => (w.benchClickAt ??= performance.now()), { capture: true });
      }),
    ),
  );
  await Promise.all(studios.map((s) => s.start.click()));
  await Promise.all(studios.map((s) => s.expectState("live")));
  // Stalls: the output player waiting for data while playing.
  await Promise.all(
    pages.map((p) =>
      p.evaluate(() => {
        const w = window as any;
        w.benchStalls = 0;
        w.benchStallEpisodes = 0;
        w.benchStallAt = [];
        // Counted as they happen: Chromium keeps only 250 resource-timing entries, so
        // reading performance.getEntriesByType("resource") stops counting after ~12 s.
        w.benchFetches = { segments: 0, parts: 0 };
        new PerformanceObserver((list) => {
          for (const e of list.getEntries()) {
            if (/\/seg_\d+\.m4s/.test(e.name)) w.benchFetches.segments += 1;
            else if (/\/part_\d+_\d+\.m4s/.test(e.name)) w.benchFetches.parts += 1;
          }
        }).observe({ type: "resource" });
        // Frames the page rendered 50 ms or more late (long-animation-frame entries), and
        // those of them in which the page's own scripts ran 16 ms or more: whether the page's
        // code or the browser's own scheduling held rendering up when the player dropped frames.
        w.benchLateFrames = { all: 0, script: 0 };
        try {
          new PerformanceObserver((list) => {
            for (const e of list.getEntries() as any[]) {
              w.benchLateFrames.all += 1;
              const scriptMs = (e.scripts ?? []).reduce((a: number, s: any) => a + s.duration, 0);
              if (scriptMs >= 16) w.benchLateFrames.script += 1;
            }
          }).observe({ type: "long-animation-frame" });
        } catch {
          /* a browser without long-animation-frame timing: the counts stay 0 */
        }
        const v = document.querySelector("video[data-testid=output]") as HTMLVideoElement;
        v.addEventListener("waiting", () => {
          w.benchStalls += 1;
          // An episode: waits less than a second apart are one hiccup to the viewer (the
          // player resumes on the first frame that arrives and may wait again at once).
          if (performance.now() - (w.benchLastWait ?? -1e9) > 1000) w.benchStallEpisodes += 1;
          w.benchLastWait = performance.now();
          w.benchStallAt.push([performance.now() / 1000, v.currentTime, w.hlsFacePlayer?.buffered ?? -1]);
        });
      }),
    ),
  );

  const t0 = Date.now();
  const seenFiles = new Map<string, number>();
  let segmentBytesAtWarm = 0;
  /** hls.js's view: distance to the live edge, its target, buffer ahead, playback rate. */
  const edges: { latency: number; target: number; buffered: number; rate: number }[] = [];
  const timeline: { t: number; session: number; latency: number }[] = [];
  /** The first browser's player each second: [t, rate, behind edge, buffered, dropped so far, stalls]. */
  const playback: number[][] = [];
  /** The first browser's player each second of the warm-up: [t, behind edge, buffered, rate]. */
  const warmupEdges: number[][] = [];
  const rss: number[] = [];
  const detectMs: number[] = [];
  let last = { server: proc(SERVER_PID), kids: new Map<number, number>() };
  const stageTicks = { decoder: 0, encoder: 0 };
  let serverTicks = 0;
  /** Seconds from the warm-up sample to the latest one (a sampling period is 1 s plus the
   * time the samples take, so counting periods would overstate every per-second rate). */
  let sampledSecs = 0;
  let warmAt = 0;
  const offsets = pages.map(() => 0);
  let startStats: any[] = [];
  let endStats: any[] = [];
  let warm = false;

  while ((Date.now() - t0) / 1000 < WARMUP + DURATION) {
    await new Promise((r) => setTimeout(r, 1000)); // a sampling period, not a wait for a condition
    const now = (Date.now() - t0) / 1000;
    const probes = await Promise.all(
      pages.map((p) =>
        p.evaluate(() => {
          const w = window as any;
          return { lat: (w.hlsFaceProbe?.latencies ?? []) as number[], skipped: w.hlsFaceProbe?.skipped ?? 0, due: w.hlsFaceProbe?.due ?? 0, previewGaps: w.hlsFaceProbe?.previewGaps ?? 0, previewCodes: w.hlsFaceProbe?.previewCodes ?? 0, stalls: w.benchStalls ?? 0, stallEpisodes: w.benchStallEpisodes ?? 0, quality: (() => { const q = (document.querySelector("video[data-testid=output]") as HTMLVideoElement).getVideoPlaybackQuality(); return [q.totalVideoFrames, q.droppedVideoFrames]; })(), previewShown: (document.querySelector("canvas[data-testid=preview-view]") as HTMLCanvasElement | null)?.hidden === false ? "canvas" : "video", segFetches: w.benchFetches?.segments ?? 0, partFetches: w.benchFetches?.parts ?? 0, stallAt: w.benchStallAt ?? [], late: w.benchLateFrames ?? { all: 0, script: 0 }, edge: w.hlsFacePlayer ?? null, stats: w.hlsFaceStats ? JSON.parse(w.hlsFaceStats) : null };
        }),
      ),
    );
    probes.forEach((p, i) => {
      if (warm && p.edge) edges.push(p.edge);
      if (!warm && i === 0) warmupEdges.push([now, p.edge?.latency ?? NaN, p.edge?.buffered ?? NaN, p.edge?.rate ?? NaN]);
      if (warm && i === 0) {
        playback.push([now, p.edge?.rate ?? NaN, p.edge?.latency ?? NaN, p.edge?.buffered ?? NaN, p.quality[1], p.stalls]);
      }
      for (const l of p.lat.slice(offsets[i])) timeline.push({ t: now, session: i, latency: l });
      offsets[i] = p.lat.length;
      if (p.stats && warm) detectMs.push(p.stats.detectMs);
    });
    if (!warm && now >= WARMUP) {
      warm = true;
      if (AT_CAPACITY) EXTRA = (await liveSessions()) - SESSIONS;
      warmAt = now;
      startStats = probes;
      timeline.length = 0;
      last = { server: proc(SERVER_PID), kids: new Map() };
      for (const c of children(SERVER_PID)) last.kids.set(c.pid, proc(c.pid)?.cpuTicks ?? 0);
      filesIn(RUNTIME_DIR, seenFiles);
      segmentBytesAtWarm = segmentBytes(seenFiles);
      continue;
    }
    if (!warm) continue;
    endStats = probes;
    const server = proc(SERVER_PID);
    if (server && last.server) {
      serverTicks += server.cpuTicks - last.server.cpuTicks;
      rss.push(server.rssKb / 1024);
    }
    for (const c of children(SERVER_PID)) {
      const ticks = proc(c.pid)?.cpuTicks ?? 0;
      stageTicks[c.stage] += ticks - (last.kids.get(c.pid) ?? ticks);
      last.kids.set(c.pid, ticks);
    }
    last.server = server;
    sampledSecs = now - warmAt;
    filesIn(RUNTIME_DIR, seenFiles);
  }

  // At capacity: the load sessions still live at the end (fewer than at the warm-up if any
  // ended early; the table shows the count at the warm-up).
  const extraAtEnd = AT_CAPACITY ? (await liveSessions()) - SESSIONS : EXTRA;
  const lat = timeline.map((x) => x.latency / 1000);
  // Start-up, per page: Start to the first output frame on screen, and latency over the
  // START_WINDOW seconds after that frame (the player joins at the live edge or catches up).
  const START_WINDOW = 20;
  const startups = await Promise.all(
    pages.map((p) =>
      p.evaluate((windowS) => {
        const w = window as any;
        const probe = w.hlsFaceProbe ?? {};
        const first = probe.firstOutputAt as number | undefined;
        const times = (probe.sampleTimes ?? []) as number[];
        const lats = (probe.latencies ?? []) as number[];
        const inWindow = (i: number) => first !== undefined && times[i] - first <= windowS * 1000;
        const early = lats.filter((_, i) => inWindow(i));
        // [seconds after the first frame, latency ms], every 5th sample, for the record.
        const series = lats.flatMap((l, i) => (inWindow(i) && i % 5 === 0 ? [[(times[i] - first!) / 1000, l]] : []));
        return { firstFrameS: first === undefined || w.benchClickAt === undefined ? NaN : (first - w.benchClickAt) / 1000, early, series };
      }, START_WINDOW),
    ),
  );
  const earlyLat = startups.flatMap((s) => s.early.map((l) => l / 1000));
  // The latency budget, first page: each latency sample after warm-up is a frame code the
  // output showed; the server reported when it decoded that frame, handed it to the
  // encoder and published its part (wall-clock ms, the same clock as the page's here).
  const budgetData = await pages[0].evaluate(() => {
    const w = window as any;
    const p = w.hlsFaceProbe ?? {};
    return { origin: performance.timeOrigin, lat: (p.latencies ?? []) as number[], times: (p.sampleTimes ?? []) as number[], codes: (p.sampleCodes ?? []) as number[], server: (w.hlsFaceFrameTimes ?? []) as number[][] };
  });
  const budget = latencyBudget(
    budgetData,
    startStats[0]?.lat.length ?? 0,
    median(playback.map((p) => p[2]).filter((x) => Number.isFinite(x))),
    (endStats[0]?.stallAt ?? []).map((s: number[]) => s[0] * 1000),
  );
  /** How much a figure grew from the warm-up sample to the last one, summed over the pages. */
  const growth = (figure: (p: any) => number) => endStats.reduce((a, p, i) => a + figure(p) - figure(startStats[i]), 0);
  const framesIn = growth((p) => p.stats?.framesIn ?? 0);
  const framesOut = growth((p) => p.stats?.framesOut ?? 0);
  const serverDropped = growth((p) => p.stats?.framesDropped ?? 0);
  // Frames the output was due to show by its media time, and those it skipped (due, never
  // presented: see PlayerTimeline in app/src/latency.rs).
  const due = growth((p) => p.due);
  const skipped = growth((p) => p.skipped);
  const stalls = growth((p) => p.stalls);
  const stallEpisodes = growth((p) => p.stallEpisodes);
  const lateFrames = growth((p) => p.late.all);
  const lateFramesScript = growth((p) => p.late.script);
  // Chromium's own count of the output's frames it decoded but did not present (late). (The
  // camera preview is painted into a canvas, its video hidden: Chromium counts every frame of
  // a hidden video as dropped, so the preview's control is the frame codes below.)
  const outTotal = growth((p) => p.quality[0]);
  const outDropped = growth((p) => p.quality[1]);
  const previewCodes = growth((p) => p.previewCodes);
  const previewSkipped = growth((p) => p.previewGaps);
  const files = [...seenFiles.keys()];
  const perFrameFiles = files.filter((f) => !/\/(init\.mp4|seg_\d+\.m4s|recording\.mp4|kept\.json)(\.part)?$/.test(f));
  const kbitPerSecond = (8 * (segmentBytes(seenFiles) - segmentBytesAtWarm)) / 1000 / sampledSecs / (SESSIONS + EXTRA);
  const rssStart = median(rss.slice(0, Math.max(1, Math.floor(rss.length / 10))));
  const rssEnd = median(rss.slice(-Math.max(1, Math.floor(rss.length / 10))));
  const result = {
    sessions: SESSIONS + EXTRA,
    browsers: SESSIONS,
    atCapacity: AT_CAPACITY,
    extraAtEnd,
    seconds: sampledSecs,
    latencyP50: quantile(lat, 0.5),
    latencyP95: quantile(lat, 0.95),
    latencySamples: lat.length,
    firstFrameS: Math.max(...startups.map((s) => s.firstFrameS)),
    startP50: quantile(earlyLat, 0.5),
    startP95: quantile(earlyLat, 0.95),
    startWindowS: START_WINDOW,
    startSeries: startups.map((s) => s.series),
    warmupEdges,
    fpsIn: framesIn / sampledSecs / SESSIONS,
    fpsOut: framesOut / sampledSecs / SESSIONS,
    // Frames the output presented a second: Chromium's decoded frames less those it dropped.
    playerFps: (outTotal - outDropped) / sampledSecs / SESSIONS,
    droppedPct: (100 * (skipped + serverDropped)) / Math.max(1, due + serverDropped),
    serverDropped,
    playerSkipped: skipped,
    skippedPct: (100 * skipped) / Math.max(1, due),
    playerDroppedPct: (100 * outDropped) / Math.max(1, outTotal),
    // What showed the camera at the end: the painted canvas, or its video (fallback).
    previewShown: endStats.map((p) => p.previewShown).join(", "),
    previewSkippedPct: (100 * previewSkipped) / Math.max(1, previewCodes),
    stallAt: endStats.map((p) => p.stallAt),
    fetches: endStats.map((p) => ({ segments: p.segFetches, parts: p.partFetches })),
    playerEdgeS: median(edges.map((e) => e.latency)),
    playerTargetS: median(edges.map((e) => e.target)),
    playerBufferS: median(edges.map((e) => e.buffered)),
    playerFasterPct: (100 * edges.filter((e) => e.rate > 1.001).length) / Math.max(1, edges.length),
    stalls,
    stallEpisodes,
    lateFrames,
    lateFramesScript,
    kbitPerSecond,
    detectMsMedian: median(detectMs),
    decodeMsPerFrame: (stageTicks.decoder * 1000) / TICK / Math.max(1, framesIn),
    encodeMsPerFrame: (stageTicks.encoder * 1000) / TICK / Math.max(1, framesOut),
    serverCpuPct: (100 * serverTicks) / TICK / sampledSecs,
    totalCpuPct: (100 * (serverTicks + stageTicks.decoder + stageTicks.encoder)) / TICK / sampledSecs,
    rssMbStart: rssStart,
    rssMbEnd: rssEnd,
    rssMbMax: Math.max(...rss),
    rssDriftPct: (100 * (rssEnd - rssStart)) / rssStart,
    filesWritten: files.length,
    perFrameFiles: perFrameFiles.length,
    timeline: timeline.map((x) => [x.t, x.session, x.latency]),
    playback,
    budget,
  };
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  fs.writeFileSync(OUT, JSON.stringify(result));

  // Plot latency over time (one line per session) with the browser itself.
  const plot = await browser.newPage({ viewport: { width: 900, height: 420 } });
  await plot.setContent(`<canvas id="c" width="900" height="420"></canvas>`);
  await plot.evaluate((r: any) => {
    const c = document.getElementById("c") as HTMLCanvasElement;
    const g = c.getContext("2d")!;
    g.fillStyle = "#fff"; g.fillRect(0, 0, 900, 420);
    const [L, R, T, B] = [60, 20, 30, 40];
    const tMax = Math.max(1, ...r.timeline.map((x: number[]) => x[0]));
    const yMax = Math.max(2, ...r.timeline.map((x: number[]) => x[2] / 1000)) * 1.1;
    const X = (t: number) => L + ((900 - L - R) * t) / tMax;
    const Y = (v: number) => 420 - B - ((420 - T - B) * v) / yMax;
    g.strokeStyle = "#999"; g.beginPath(); g.moveTo(L, T); g.lineTo(L, 420 - B); g.lineTo(900 - R, 420 - B); g.stroke();
    g.fillStyle = "#333"; g.font = "13px sans-serif";
    for (let v = 0; v <= yMax; v += 0.5) { g.fillText(v.toFixed(1) + " s", 8, Y(v) + 4); }
    g.fillText(`glass-to-glass latency of the browser session(s), ${r.sessions} session(s) live; p50 ${r.latencyP50.toFixed(2)} s, p95 ${r.latencyP95.toFixed(2)} s`, L, 18);
    g.fillText("time (s)", 900 - R - 60, 420 - 10);
    const colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
    for (let s = 0; s < r.browsers; s++) {
      g.fillStyle = colors[s % colors.length];
      for (const [t, sess, l] of r.timeline) if (sess === s) g.fillRect(X(t) - 1, Y(l / 1000) - 1, 2, 2);
    }
  }, result);
  await plot.screenshot({ path: OUT.replace(/\.json$/, ".png") });

  await Promise.all(studios.map((s) => s.stop.click()));
  await Promise.all(contexts.map((c) => c.close()));
});

/** Splits the glass-to-glass latency of the samples from `from` on at the server's three
 * points (see server/src/session/frame_times.rs): rows of [stage, mean ms, p50 ms, p95 ms]. The means
 * add up to the matched samples' mean latency exactly (each sample's stages are differences
 * of the same frame's times). `holdBackS`: the player's distance behind the newest part. */
/** `stallsMs`: when the first page's player waited (page clock): the stages of the frames it
 * showed in the second after each wait say where the late frame lost its time. */
function latencyBudget(d: { origin: number; lat: number[]; times: number[]; codes: number[]; server: number[][] }, from: number, holdBackS: number, stallsMs: number[]) {
  const byCode = new Map<number, number[][]>();
  for (const t of d.server) {
    const list = byCode.get(t[0]) ?? [];
    list.push(t);
    byCode.set(t[0], list);
  }
  const stages: number[][] = [[], [], [], [], []];
  // Per stall (after the warm-up): the largest of each stage over the frames shown in the
  // second after it.
  const firstShown = d.times[from] ?? Infinity;
  const afterStall = stallsMs.filter((t) => t >= firstShown).map((t) => ({ t, max: [0, 0, 0, 0, 0] }));
  for (let i = from; i < d.lat.length; i++) {
    const shown = d.origin + d.times[i];
    const camera = shown - d.lat[i];
    // The same frame on the server: decoded after the camera showed it, published before
    // the output did (a looping clip repeats codes, seconds apart).
    const t = (byCode.get(d.codes[i]) ?? []).find((t) => t[1] >= camera - 5 && t[3] <= shown + 5);
    if (!t) continue;
    stages[0].push(t[1] - camera);
    stages[1].push(t[2] - t[1]);
    stages[2].push(t[3] - t[2]);
    stages[3].push(shown - t[3]);
    stages[4].push(d.lat[i]);
    for (const s of afterStall) {
      if (d.times[i] > s.t && d.times[i] <= s.t + 1000) {
        const row = [t[1] - camera, t[2] - t[1], t[3] - t[2], shown - t[3], d.lat[i]];
        s.max = s.max.map((m, k) => Math.max(m, row[k]));
      }
    }
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const names = [
    "camera → frame decoded on the server (recorder chunk, WebSocket, decoder)",
    "frame path (follower, boxes; never waits for a detection)",
    "encoder and packager, until the frame's part is published",
    "part published → shown (playlist reload, fetch, buffer, player hold-back, render)",
    "glass to glass (the same frames)",
  ];
  return {
    matched: stages[4].length,
    samples: Math.max(0, d.lat.length - from),
    holdBackMs: holdBackS * 1000,
    rows: names.map((name, k) => [name, mean(stages[k]), quantile(stages[k], 0.5), quantile(stages[k], 0.95)]),
    stalls: afterStall.map((s) => [s.t / 1000, ...s.max]),
  };
}
