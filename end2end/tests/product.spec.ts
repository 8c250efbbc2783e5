import { test, expect } from "@playwright/test";
import { readFileSync } from "node:fs";
import { Studio } from "./fixtures/studio";

test.describe("product", () => {
  test("a viewer link lets another browser watch, until the session ends", async ({ page, browser, request }) => {
    const studio = new Studio(page);
    await studio.open();
    await studio.start.click();
    await studio.expectState("live");
    const link = page.getByTestId("viewer-link");
    await expect(link).toBeVisible();
    const href = (await link.getAttribute("href"))!;
    expect(href).toMatch(/\/watch\/[0-9a-f]{32}$/);
    expect(await link.textContent()).toBe(href);

    const other = await browser.newContext();
    const viewerPage = await other.newPage();
    await viewerPage.goto(href);
    await expect(viewerPage.locator("main[data-hydrated=true]")).toBeVisible();
    const viewer = new Studio(viewerPage);
    const status = viewerPage.getByTestId("viewer-status");
    await expect(status).toHaveAttribute("data-state", "live");
    await viewer.expectPlaying("viewer");
    await expect
      .poll(async () => (await viewer.readFrame("viewer")).green, { message: "the viewer sees the boxes" })
      .toBeGreaterThan(200);

    await studio.stop.click();
    await studio.expectState("stopped");
    await expect(link).toBeHidden();
    const token = href.split("/").pop()!;
    await expect
      .poll(async () => (await request.get(`/view/${token}/playlist.m3u8`)).status(), {
        message: "the link is revoked when the session ends",
      })
      .toBe(404);
    await viewerPage.reload();
    await expect(status).toHaveAttribute("data-state", "ended");
    await expect(status).toContainText("ended");
    await other.close();
  });

  test("a stopped session can be downloaded as one MP4", async ({ page }) => {
    const studio = new Studio(page);
    await studio.open();
    await studio.start.click();
    await studio.expectState("live");
    await studio.expectPlaying("output", 2);
    await studio.stop.click();
    await studio.expectState("stopped");
    const download = page.getByTestId("download");
    await expect(download).toBeVisible();
    const [file] = await Promise.all([page.waitForEvent("download"), download.click()]);
    expect(file.suggestedFilename()).toBe("hls-face-recording.mp4");
    const saved = test.info().outputPath("recording.mp4");
    await file.saveAs(saved);
    const bytes = readFileSync(saved);
    expect(bytes.length).toBeGreaterThan(20_000);
    expect(bytes.subarray(4, 8).toString("latin1"), "an MP4 (ftyp box first)").toBe("ftyp");
  });

  test("the detector's own settings, and each changes the output", async ({ page }) => {
    const studio = new Studio(page);
    await studio.open();
    await studio.start.click();
    await studio.expectState("live");
    const faces = studio.stats.locator("[data-stat=faces]");
    await expect(faces).toHaveText(/^[1-9]/);

    // The server runs CenterFace: its threshold and minimum face size, nothing of Haar's.
    const detector = page.getByTestId("detector");
    await expect(detector.locator("legend")).toContainText("CenterFace");
    await expect(page.getByTestId("scale-factor")).toHaveCount(0);
    await expect(page.getByTestId("min-neighbors")).toHaveCount(0);

    // Each setting, pushed to where no face qualifies, takes the boxes away; set back, they
    // return.
    const noBoxes = async () => {
      await expect(faces).toHaveText("0");
      // The player is behind the detector: wait for the last boxed frames to play out, then
      // the boxes must stay away.
      await expect
        .poll(async () => (await studio.readFrame("output")).green, { message: "boxes leave the output" })
        .toBeLessThan(50);
      for (let i = 0; i < 3; i++) {
        await studio.expectPlaying("output", 0.3);
        expect((await studio.readFrame("output")).green).toBeLessThan(50);
      }
    };
    const boxesBack = async () => {
      await expect(faces).toHaveText(/^[1-9]/);
      await expect
        .poll(async () => (await studio.readFrame("output")).green, { message: "boxes return" })
        .toBeGreaterThan(200);
    };
    const settings: [string, string, string, string][] = [
      // A minimum face size larger than the frame.
      ["min-face", "1080", "1080 px", "32"],
      // A confidence the test face (scored 0.8-0.9 by CenterFace) does not reach.
      ["threshold", "0.95", "0.95", "0.5"],
    ];
    for (const [id, far, shown, back] of settings) {
      const slider = page.getByTestId(id);
      await slider.fill(far);
      await expect(detector).toContainText(shown);
      await noBoxes();
      if (id === "min-face") {
        // The status says why no face is boxed, not "faces are boxed".
        await expect(studio.status).toContainText("smaller than the minimum face size (1080 px)");
      }
      await slider.fill(back);
      await boxesBack();
      await expect(studio.status).toContainText("faces are boxed");
    }
    await expect(page.getByTestId("notice")).toHaveText("");
    await studio.stop.click();
    await studio.expectState("stopped");
  });

  test("serves Prometheus metrics", async ({ request }) => {
    const res = await request.get("/metrics");
    expect(res.status()).toBe(200);
    expect(res.headers()["content-type"]).toContain("text/plain");
  });
});
