import { test, expect, type Page } from "@playwright/test";
import AxeBuilder from "@axe-core/playwright";
import { OwnServer, root } from "./fixtures/own_server";

/**
 * The Channels page and a channel's player, on a server of this spec's own (the suite's
 * server has no channels): a file-loop channel that plays, and an RTSP channel whose camera
 * is not there. Checked at phone width with axe; the channel's video plays in Chromium.
 */
const port = Number(process.env.CHANNELS_PORT ?? 3389);
const base = `http://127.0.0.1:${port}`;
// A port nothing listens on: the camera is "unreachable".
const freeRtspPort = 1;
const server = new OwnServer(port, [
  "[[channel]]",
  'name = "demo"',
  `source = "file:${root}/target/media/real-face-h264.mkv"`,
  "[[channel]]",
  'name = "back-door"',
  `source = "rtsp://127.0.0.1:${freeRtspPort}/cam"`,
]);

test.beforeAll(async () => {
  await server.start("/channels.json");
});

test.afterAll(async () => {
  await server.stop();
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
