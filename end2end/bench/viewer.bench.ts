/**
 * One real viewer page (hls.js in Chromium) watching a live session through its viewer link,
 * for scripts/bench-viewers: how far behind the live edge the player plays, whether it stalls
 * and how many frames it drops, sampled each second; and its start-up: opening the link →
 * the first frame presented, and behind the edge over the first 20 s. Skipped unless
 * VIEWER_URL is set.
 *   VIEWER_URL=http://127.0.0.1:3480/watch/n1-… SECONDS=20 OUT=result.json
 */
import { test, expect } from "@playwright/test";
import fs from "node:fs";

const url = process.env.VIEWER_URL;
const seconds = Number(process.env.SECONDS ?? 20);

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.round(q * (s.length - 1)))];
}

test("a viewer page plays the live session", async ({ page }) => {
  test.skip(!url, "needs VIEWER_URL (scripts/bench-viewers sets it)");
  // Start-up, as a viewer who opens the link mid-session sees it: the wall time of the first
  // frame the page presents, then how far behind the live edge it plays over its first 20 s.
  await page.addInitScript(() => {
    const w = window as any;
    const watch = () => {
      const v = document.querySelector("video") as HTMLVideoElement | null;
      if (!v) return requestAnimationFrame(watch);
      v.requestVideoFrameCallback((now) => (w.benchFirstFrameAt = performance.timeOrigin + now));
    };
    requestAnimationFrame(watch);
    // When the page hydrates (the player starts then), on the page's clock.
    new MutationObserver((_, observer) => {
      if (document.querySelector("main[data-hydrated=true]")) {
        w.benchHydratedAt = performance.now();
        observer.disconnect();
      }
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-hydrated"] });
  });
  const openedAt = Date.now();
  await page.goto(url!);
  await expect(page.getByTestId("viewer-status")).toHaveAttribute("data-state", "live");
  const video = page.locator("video");
  await expect.poll(() => page.evaluate(() => (window as any).benchFirstFrameAt ?? null)).not.toBeNull();
  const firstFrameAt = await page.evaluate(() => (window as any).benchFirstFrameAt as number);
  // Where the start-up went, ms after the navigation began: the page, the wasm bundle, the
  // hydration that starts the player, hls.js's first playlist, init segment and media.
  const startup = await page.evaluate(() => {
    const w = window as any;
    const entries = performance.getEntriesByType("resource") as PerformanceResourceTiming[];
    const first = (test: (name: string) => boolean) => {
      const e = entries.find((r) => test(new URL(r.name).pathname));
      return e ? Math.round(e.responseEnd) : null;
    };
    const nav = performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming | undefined;
    return {
      pageMs: nav ? Math.round(nav.responseEnd) : null,
      wasmMs: first((p) => p.endsWith(".wasm")),
      hydratedMs: w.benchHydratedAt === undefined ? null : Math.round(w.benchHydratedAt),
      playlistMs: first((p) => p.endsWith(".m3u8")),
      initMs: first((p) => p.endsWith("init.mp4")),
      mediaMs: first((p) => p.endsWith(".m4s")),
      frameMs: Math.round(w.benchFirstFrameAt - performance.timeOrigin),
    };
  });
  console.log(`viewer-startup: ${JSON.stringify(startup)}`);
  const startBehind: number[] = [];
  while (Date.now() - firstFrameAt < 20_000) {
    await page.waitForTimeout(250); // a sampling period, not a wait for a condition
    const edge = await page.evaluate(() => (window as any).hlsFacePlayer ?? null);
    if (edge && Number.isFinite(edge.latency)) startBehind.push(edge.latency);
  }
  await page.evaluate(() => {
    const w = window as any;
    w.benchStalls = 0;
    document.querySelector("video")!.addEventListener("waiting", () => (w.benchStalls += 1));
  });
  const behind: number[] = [];
  const quality = () =>
    video.evaluate((v: HTMLVideoElement) => {
      const q = v.getVideoPlaybackQuality();
      return [q.totalVideoFrames, q.droppedVideoFrames];
    });
  const [total0, dropped0] = await quality();
  for (let i = 0; i < seconds; i++) {
    await page.waitForTimeout(1000); // a sampling period, not a wait for a condition
    const edge = await page.evaluate(() => (window as any).hlsFacePlayer ?? null);
    if (edge && Number.isFinite(edge.latency)) behind.push(edge.latency);
  }
  const [total1, dropped1] = await quality();
  const stalls = await page.evaluate(() => (window as any).benchStalls as number);
  const result = {
    url,
    seconds,
    firstFrameS: (firstFrameAt - openedAt) / 1000,
    startup,
    startBehindP50: quantile(startBehind, 0.5),
    startBehindP95: quantile(startBehind, 0.95),
    behindP50: quantile(behind, 0.5),
    behindP95: quantile(behind, 0.95),
    samples: behind.length,
    stalls,
    droppedPct: (100 * (dropped1 - dropped0)) / Math.max(1, total1 - total0),
  };
  console.log(`viewer-page-json: ${JSON.stringify(result)}`);
  if (process.env.OUT) fs.writeFileSync(process.env.OUT, JSON.stringify(result));
});
