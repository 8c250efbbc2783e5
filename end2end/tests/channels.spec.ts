import { test, expect, type Page } from "@playwright/test";
import AxeBuilder from "@axe-core/playwright";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/**
 * The Channels page and a channel's player, on a server of this spec's own (the suite's
 * server has no channels): a file-loop channel that plays, and an RTSP channel whose camera
 * is not there. Checked at phone width with axe; the channel's video plays in Chromium.
 */
const root = path.resolve(__dirname, "../..");
const port = Number(process.env.CHANNELS_PORT ?? 3389);
const base = `http://127.0.0.1:${port}`;
let server: ChildProcess | undefined;

function freeRtspPort(): number {
  // A port nothing listens on: the camera is "unreachable".
  return 1;
}

test.beforeAll(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hls-face-channels-"));
  const config = path.join(dir, "hls-face.toml");
  fs.writeFileSync(
    config,
    [
      "[site]",
      `addr = "127.0.0.1:${port}"`,
      `root = "${root}/target/site"`,
      "[pipeline]",
      `runtime-dir = "${dir}/runtime"`,
      "[detector]",
      `model = "${root}/models/centerface.onnx"`,
      "[limits]",
      "max-cpu-percent = 100",
      "[[channel]]",
      'name = "demo"',
      `source = "file:${root}/target/media/real-face-h264.mkv"`,
      "[[channel]]",
      'name = "back-door"',
      `source = "rtsp://127.0.0.1:${freeRtspPort()}/cam"`,
      "",
    ].join("\n"),
  );
  server = spawn(path.join(root, "target/debug/hls-face"), ["--config", config], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  await expect
    .poll(async () => (await fetch(`${base}/channels.json`).catch(() => undefined))?.status, {
      timeout: 60_000,
    })
    .toBe(200);
});

test.afterAll(async () => {
  server?.kill("SIGTERM");
});

async function seriousViolations(page: Page) {
  const results = await new AxeBuilder({ page }).analyze();
  return results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

test("the Channels page shows each channel's state at phone width, and a channel plays", async ({ page }) => {
  await page.setViewportSize({ width: 360, height: 740 });
  await page.goto(`${base}/channels`);
  await expect(page.locator("main[data-hydrated=true]")).toBeVisible();
  const demo = page.locator("[data-testid=channel-card][data-name=demo]");
  const door = page.locator("[data-testid=channel-card][data-name=back-door]");
  await expect(demo).toHaveAttribute("data-state", "live");
  await expect(door).toHaveAttribute("data-state", "down");
  await expect(door.getByTestId("channel-state")).toContainText(/Source down since \d\d:\d\d — camera unreachable/);
  // The live card shows a recent processed frame.
  await expect
    .poll(() => demo.locator("img").evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth))
    .toBe(320);
  expect(await seriousViolations(page)).toEqual([]);
  expect(
    await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth),
  ).toBeLessThanOrEqual(0);
  await page.screenshot({ path: "test-results/channels-phone.png", fullPage: true });

  await demo.getByRole("link", { name: "demo" }).click();
  await expect(page).toHaveURL(/\/channel\/demo$/);
  await expect(page.getByTestId("channel-status")).toHaveAttribute("data-state", "live");
  const video = page.getByTestId("channel-video");
  const time = () => video.evaluate((v: HTMLVideoElement) => v.currentTime);
  await expect.poll(time).toBeGreaterThan(2);
  await expect(page.getByTestId("channel-stats")).toContainText(/behind live \d+\.\d\d s/);
  expect(await seriousViolations(page)).toEqual([]);
});

test("an unknown channel says so", async ({ page }) => {
  await page.goto(`${base}/channel/nope`);
  await expect(page.getByTestId("channel-status")).toContainText("There is no channel of that name.");
});
