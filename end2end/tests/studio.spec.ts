import { test, expect } from "@playwright/test";
import { Studio } from "./fixtures/studio";

test.describe("page", () => {
  test("hydrates and previews the camera", async ({ page }) => {
    const studio = new Studio(page);
    await studio.open();
    for (const id of ["start", "stop", "status", "stats"]) {
      await expect(page.getByTestId(id)).toBeAttached();
    }
    await expect(studio.stop).toBeDisabled();
    await expect(studio.start).toBeEnabled();
    await studio.expectState("idle");
    await expect(studio.status).toContainText("Camera ready");

    await studio.expectPlaying("preview");
    const frame = await studio.readFrame("preview");
    expect(frame.width).toBeGreaterThan(0);
    expect(frame.mean, "the preview frame is not black").toBeGreaterThan(20);

    // The camera shows painted into a canvas, its own video hidden: with two videos playing,
    // desktop Chromium would lower the display to 30 Hz and the output would skip frames
    // (app/src/preview_mode.rs).
    await expect(studio.previewView).toBeVisible();
    await expect(studio.preview).toBeHidden();
    const painted = await studio.readFrame("preview-view");
    expect(painted.width, "the canvas takes the camera's size").toBe(frame.width);
    expect(painted.height).toBe(frame.height);
    expect(painted.mean, "the painted preview is not black").toBeGreaterThan(20);
    // It keeps painting: the clip's frame-code strip changes the picture every frame.
    await expect
      .poll(async () => (await studio.readFrame("preview-view")).mean, { message: "the painted preview moves" })
      .not.toBe(painted.mean);
  });

  test("serves the pinned hls.js itself", async ({ request }) => {
    const res = await request.get("/vendor/hls.min.js");
    expect(res.status()).toBe(200);
    expect(await res.text()).toContain("hls.js");
  });
});

test.describe("live pipeline", () => {
  test("streams the camera back with green boxes on the face, then stops", async ({ page, request }) => {
    const studio = new Studio(page);
    await studio.open();
    await studio.start.click();
    await expect(studio.stop).toBeEnabled();
    await studio.expectState("live");
    await studio.expectPlaying("output");
    // One video plays on the page (the output); the camera is the painted canvas.
    await expect(page.locator("video:visible")).toHaveCount(1);
    await expect(studio.previewView).toBeVisible();

    // A frame of the processed stream carries a green box around the face.
    await expect
      .poll(async () => (await studio.readFrame("output")).green, { message: "green box pixels in the output" })
      .toBeGreaterThan(200);
    const frame = await studio.readFrame("output");
    expect(frame.mean).toBeGreaterThan(20);
    const box = frame.box!;
    // The face of the fake camera's astronaut is in the upper middle of the frame.
    expect((box.x0 + box.x1) / 2).toBeGreaterThan(frame.width * 0.25);
    expect((box.x0 + box.x1) / 2).toBeLessThan(frame.width * 0.75);
    expect((box.y0 + box.y1) / 2).toBeLessThan(frame.height * 0.6);

    await expect(studio.stats.locator("[data-stat=faces]")).toHaveText(/^[1-9]/);
    // The player's own count of frames it could not show, with any camera.
    await expect(studio.stats.locator("[data-stat=player-dropped]")).toHaveText(/^\d+ of [1-9]\d* \(\d+\.\d %\)$/);
    // How far behind live, from the stream's PROGRAM-DATE-TIME, without ?measure.
    const behind = studio.stats.locator("[data-stat=behind-live]");
    await expect(behind).toHaveText(/^\d+\.\d\d s$/);
    expect(parseFloat((await behind.textContent()) ?? "")).toBeLessThan(3);
    // The README's screenshot (docs/studio.png is a copy of this).
    await page.screenshot({ path: "../target/studio-live.png" });

    const url = await studio.playlistUrl();
    await studio.stop.click();
    await studio.expectState("stopped");
    const playlist = await (await request.get(url)).text();
    expect(playlist).toContain("#EXT-X-ENDLIST");
    await expect(studio.start).toBeEnabled();
  });

  test("with ?measure the page measures glass-to-glass latency and the player's frames", async ({ page }) => {
    const studio = new Studio(page);
    await studio.open("/?measure");
    await studio.start.click();
    await studio.expectState("live");
    const latency = studio.stats.locator("[data-stat=latency]");
    // The fake camera's clip carries frame codes: read in both videos, they give a latency.
    await expect
      .poll(async () => Number((await latency.getAttribute("data-latency-ms")) || NaN), {
        message: "glass-to-glass latency in ms",
      })
      .toBeGreaterThan(30);
    expect(Number(await latency.getAttribute("data-latency-ms"))).toBeLessThan(5000);
    await expect(latency).toHaveText(/^\d+\.\d\d s$/);
    // Frames shown a second and frames skipped, from the output's own timeline.
    await expect(studio.stats.locator("[data-stat=player]")).toHaveText(/^[1-9]\d* \/ \d+$/);
    await studio.stop.click();
    await studio.expectState("stopped");
  });

  test("privacy mode hides faces instead of boxing them", async ({ page }) => {
    const studio = new Studio(page);
    await studio.open();
    await page.getByTestId("privacy").check();
    await studio.start.click();
    await studio.expectState("live");
    await studio.expectPlaying("output");
    await expect(studio.stats.locator("[data-stat=faces]")).toHaveText(/^[1-9]/);
    // Faces are found, yet the played frames carry no green box.
    for (let i = 0; i < 5; i++) {
      await studio.expectPlaying("output", 0.2);
      expect((await studio.readFrame("output")).green).toBeLessThan(50);
    }
    // Switching privacy off live brings the boxes back.
    await page.getByTestId("privacy").uncheck();
    await expect
      .poll(async () => (await studio.readFrame("output")).green, { message: "boxes return" })
      .toBeGreaterThan(200);
    await studio.stop.click();
    await studio.expectState("stopped");
  });

  test("two browsers run separate sessions at the same time", async ({ browser }) => {
    const contexts = await Promise.all([browser.newContext(), browser.newContext()]);
    const studios = await Promise.all(contexts.map(async (c) => new Studio(await c.newPage())));
    await Promise.all(studios.map((s) => s.open()));
    await Promise.all(studios.map((s) => s.start.click()));
    await Promise.all(studios.map((s) => s.expectState("live")));
    await Promise.all(studios.map((s) => s.expectPlaying("output")));
    const [a, b] = await Promise.all(studios.map((s) => s.playlistUrl()));
    expect(a).not.toEqual(b);
    await Promise.all(studios.map((s) => s.stop.click()));
    await Promise.all(studios.map((s) => s.expectState("stopped")));
    await Promise.all(contexts.map((c) => c.close()));
  });
});

test("Copy says the viewer link was copied, for a moment", async ({ browser }) => {
  const context = await browser.newContext({ permissions: ["clipboard-read", "clipboard-write"] });
  const page = await context.newPage();
  const studio = new Studio(page);
  await studio.open();
  await studio.start.click();
  await studio.expectState("live");
  const copy = page.getByTestId("copy-viewer-link");
  await expect(copy).toHaveText("Copy");
  await copy.click();
  await expect(copy).toHaveText("Copied ✓");
  const href = await page.getByTestId("viewer-link").getAttribute("href");
  expect(await page.evaluate(() => navigator.clipboard.readText())).toContain(href!);
  await expect(copy).toHaveText("Copy");
  await studio.stop.click();
  await studio.expectState("stopped");
  await context.close();
});
