import { test, expect, chromium, type Page } from "@playwright/test";
import { Studio } from "./fixtures/studio";
import { relay } from "./fixtures/relay";
import { OwnServer } from "./fixtures/own_server";

// The page tells the truth in the states around the happy path: a stalled connection, a
// camera that is denied or missing, a reload or a server restart mid-session, and the end
// of a session. Each drives the state and checks the words and the controls.

/** Records every `data-link` value the status element takes, in order. */
async function recordLinkStates(page: Page) {
  await page.evaluate(() => {
    const status = document.querySelector("[data-testid=status]")!;
    const seen: string[] = [status.getAttribute("data-link") ?? ""];
    (window as unknown as { linkStates: string[] }).linkStates = seen;
    new MutationObserver(() => {
      const now = status.getAttribute("data-link") ?? "";
      if (seen[seen.length - 1] !== now) seen.push(now);
    }).observe(status, { attributes: true, attributeFilter: ["data-link"] });
  });
}

test("a stalled connection is shown as stalled within about a second, then how far behind it is", async ({ page }) => {
  const port = Number(process.env.BLIP_PORT ?? 0);
  test.skip(!port, "needs BLIP_PORT, a port the server allows as a Host (scripts/test sets it)");
  const link = relay(new URL(process.env.BASE_URL ?? "http://127.0.0.1:3000"), port);
  await link.listen();
  try {
    const studio = new Studio(page);
    await page.goto(`http://127.0.0.1:${port}/`);
    await expect(page.locator("main[data-hydrated=true]")).toBeVisible();
    await studio.start.click();
    await studio.expectState("live");
    await expect(studio.status).toHaveAttribute("data-link", "healthy");
    await recordLinkStates(page);

    // Offline for 3 s, the socket stalling without closing.
    link.stall();
    const stalledAt = Date.now();
    await expect(studio.status).toHaveAttribute("data-link", "stalled", { timeout: 3000 });
    const noticed = Date.now() - stalledAt;
    expect(noticed, "noticed within ~1 s of the next expected figures").toBeLessThan(2500);
    await expect(studio.status).toContainText("Connection stalled");
    await expect(studio.status).not.toContainText("faces are boxed");
    await page.screenshot({ path: "../target/states-stalled.png" });
    // The outage itself lasts 3 s (the scenario, not a wait for a condition).
    await page.waitForTimeout(Math.max(0, 3000 - (Date.now() - stalledAt)));
    link.flow();

    // Back: it says so until it is live again, then the live sentence returns.
    await expect(studio.status).toHaveAttribute("data-link", "healthy", { timeout: 20_000 });
    await expect(studio.status).toContainText("faces are boxed");
    expect(await studio.state()).toBe("live");
    const states = await page.evaluate(() => (window as unknown as { linkStates: string[] }).linkStates);
    expect(states[0]).toBe("healthy");
    expect(states).toContain("stalled");
    expect(states[states.length - 1]).toBe("healthy");
    // Frames dropped during the catch-up are the network's, not the encoder's.
    await expect(page.getByTestId("dropped-hint")).toContainText("connection stalled");
    await studio.expectPlaying("output", 1);
    await studio.stop.click();
    await studio.expectState("stopped");
  } finally {
    await link.close();
  }
});

test("a denied camera disables Start with the reason, and allowing it opens the camera without a reload", async ({
  baseURL,
}) => {
  // A Chromium that asks about the camera like a user's (the suite's own grants it at once).
  const launch = test.info().project.use.launchOptions!;
  const browser = await chromium.launch({
    ...launch,
    args: launch.args!.filter((a) => a !== "--use-fake-ui-for-media-stream"),
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  const origin = new URL(baseURL!).origin;
  // The site setting, as the user changes it in the browser's UI.
  const cdp = await context.newCDPSession(page);
  const { targetInfo } = await cdp.send("Target.getTargetInfo");
  const set = (setting: "denied" | "granted") =>
    cdp.send("Browser.setPermission", {
      permission: { name: "camera" },
      setting,
      origin,
      browserContextId: targetInfo.browserContextId,
    });
  await set("denied");
  const studio = new Studio(page);
  await studio.open();
  await studio.expectState("error");
  await expect(studio.status).toContainText("Camera access was denied");
  await expect(studio.start).toBeDisabled();
  const reason = page.getByTestId("start-reason");
  await expect(reason).toBeVisible();
  await expect(reason).toContainText("allow it for this site");
  await expect(studio.start).toHaveAttribute("aria-describedby", "start-reason");
  await page.screenshot({ path: "../target/states-camera-denied.png" });

  // The user allows the camera in the site settings: the page notices by itself.
  await set("granted");
  await expect(studio.status).toContainText("Camera ready");
  await expect(studio.start).toBeEnabled();
  await expect(reason).toBeHidden();
  await studio.start.click();
  await studio.expectState("live");
  await studio.stop.click();
  await studio.expectState("stopped");
  await browser.close();
});

test("without a camera Start looks again, and a camera plugged in opens by itself", async ({ page }) => {
  // No camera: getUserMedia fails as the browser does, until one is "plugged in".
  await page.addInitScript(() => {
    const w = window as unknown as { noCamera: boolean };
    w.noCamera = true;
    const devices = navigator.mediaDevices;
    const real = devices.getUserMedia.bind(devices);
    devices.getUserMedia = (c) =>
      w.noCamera ? Promise.reject(new DOMException("Requested device not found", "NotFoundError")) : real(c);
  });
  const studio = new Studio(page);
  await studio.open();
  await studio.expectState("error");
  await expect(studio.status).toContainText("No camera was found");
  await expect(studio.start).toBeEnabled();
  await expect(page.getByTestId("start-reason")).toBeHidden();
  // Start looks again (and still finds none).
  await studio.start.click();
  await expect(studio.status).toContainText("No camera was found");
  // One is plugged in: the browser fires devicechange.
  await page.evaluate(() => {
    (window as unknown as { noCamera: boolean }).noCamera = false;
    navigator.mediaDevices.dispatchEvent(new Event("devicechange"));
  });
  await expect(studio.status).toContainText("Camera ready");
  await expect(studio.start).toBeEnabled();
});

test("over plain HTTP on a non-local name Start is disabled and says why", async ({ page, baseURL }) => {
  const port = new URL(baseURL!).port;
  await page.goto(`http://insecure.hls-face.test:${port}/`);
  await expect(page.locator("main[data-hydrated=true]")).toBeVisible();
  const studio = new Studio(page);
  await studio.expectState("error");
  await expect(studio.start).toBeDisabled();
  await expect(page.getByTestId("start-reason")).toContainText("HTTPS");
});

test("a reload mid-session asks first, and the reloaded page offers the recording", async ({ page, request }) => {
  const studio = new Studio(page);
  await studio.open();
  await studio.start.click();
  await studio.expectState("live");
  await studio.expectPlaying("output", 2);
  const asked: string[] = [];
  page.on("dialog", (d) => {
    asked.push(d.type());
    void d.accept();
  });
  await page.reload();
  await expect(page.locator("main[data-hydrated=true]")).toBeVisible();
  expect(asked).toEqual(["beforeunload"]);
  const kept = page.getByTestId("kept-download");
  await expect(kept).toHaveCount(1);
  await expect(page.getByTestId("kept")).toContainText("kept for");
  await page.screenshot({ path: "../target/states-kept-after-reload.png" });
  const href = (await kept.getAttribute("href"))!;
  const mp4 = await request.get(href);
  expect(mp4.status()).toBe(200);
  expect((await mp4.body()).length).toBeGreaterThan(20_000);
});

test("a session ended by a server restart is offered after it, to the same browser", async ({ browser }) => {
  const server = new OwnServer(Number(process.env.RESTART_PORT ?? 3391));
  await server.start();
  try {
    const context = await browser.newContext({ baseURL: server.base });
    const page = await context.newPage();
    const studio = new Studio(page);
    await studio.open();
    await studio.start.click();
    await studio.expectState("live");
    await studio.expectPlaying("output", 2);
    await server.stop("SIGTERM");
    await studio.expectState("error");
    await expect(studio.status).toContainText("shutting down");
    await expect(studio.status).toContainText("Reload this page");
    await server.start();
    page.on("dialog", (d) => void d.accept());
    await page.reload();
    await expect(page.locator("main[data-hydrated=true]")).toBeVisible();
    await expect(page.getByTestId("kept-download")).toHaveCount(1);
    const other = await browser.newContext({ baseURL: server.base });
    const stranger = await other.newPage();
    await new Studio(stranger).open();
    await expect(stranger.getByTestId("status")).toContainText("Camera ready");
    await expect(stranger.getByTestId("kept")).toHaveCount(0);
    await other.close();
    await context.close();
  } finally {
    await server.stop();
  }
});

test("after Stop the figures give way to the session's summary; while live a chart draws the last minute", async ({
  page,
}) => {
  const studio = new Studio(page);
  await studio.open();
  await studio.start.click();
  await studio.expectState("live");
  const chart = page.getByTestId("chart");
  await expect(chart).toBeVisible();
  await expect
    .poll(async () => ((await page.getByTestId("chart-fps").getAttribute("points")) ?? "").split(" ").length)
    .toBeGreaterThan(4);
  await expect(chart.locator("svg")).toHaveAttribute("aria-label", /frames a second now/);
  await studio.expectPlaying("output", 2);
  await studio.stop.click();
  await studio.expectState("stopped");
  const summary = page.getByTestId("summary");
  await expect(summary).toBeVisible();
  await expect(studio.stats).toHaveCount(0);
  await expect(summary.locator("[data-stat=length]")).toHaveText(/^\d+ s$|^\d+ min \d\d s$/);
  await expect(summary.locator("[data-stat=frames]")).toHaveText(/^[1-9]\d*$/);
  await expect(summary).toContainText("frames a second on average");
  await expect(summary.locator("[data-stat=most-faces]")).toHaveText(/^[1-9]/);
  await page.screenshot({ path: "../target/states-summary.png", fullPage: true });
  // A new session brings the live figures back.
  await studio.start.click();
  await studio.expectState("live");
  await expect(studio.stats).toBeVisible();
  await expect(summary).toHaveCount(0);
  await studio.stop.click();
  await studio.expectState("stopped");
});
