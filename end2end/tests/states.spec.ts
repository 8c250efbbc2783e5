import { test, expect } from "@playwright/test";
import { Studio } from "./fixtures/studio";

// Every state the page shows is true: a viewer learns the end within a second, a page whose
// token went stale (a server restart) reconnects by itself, a lost camera is its own state
// with a retry that needs no reload, and no raw browser text reaches the page.
test.describe("states", () => {
  test("the viewer page says the session ended within a second, without the player", async ({ page, browser }) => {
    const studio = new Studio(page);
    await studio.open();
    await studio.start.click();
    await studio.expectState("live");
    const href = (await page.getByTestId("viewer-link").getAttribute("href"))!;
    const other = await browser.newContext();
    const viewerPage = await other.newPage();
    await viewerPage.goto(href);
    const status = viewerPage.getByTestId("viewer-status");
    await expect(status).toHaveAttribute("data-state", "live");
    await studio.stop.click();
    await studio.expectState("stopped");
    // The probe runs every second; allow for the stop to reach the server first.
    await expect(status).toHaveAttribute("data-state", "ended", { timeout: 3000 });
    await expect(viewerPage.getByTestId("viewer")).toBeHidden();
    await expect(status).toContainText("ended");

    // A link that never existed says so at once, with no empty player.
    await viewerPage.goto("/watch/0123456789abcdef0123456789abcdef");
    await expect(status).toHaveAttribute("data-state", "ended", { timeout: 3000 });
    await expect(viewerPage.getByTestId("viewer")).toBeHidden();
    await other.close();
  });

  test("a page whose token went stale fetches a fresh one and connects", async ({ page }) => {
    const studio = new Studio(page);
    await studio.open();
    await expect(studio.status).toContainText("Camera ready");
    // What a server restart does to an open page: its token no longer matches.
    await page.evaluate(() =>
      document.querySelector("meta[name=csrf-token]")!.setAttribute("content", "0".repeat(64)),
    );
    await studio.start.click();
    await studio.expectState("live");
    await studio.stop.click();
    await studio.expectState("stopped");
  });

  test("over plain HTTP on a non-local name the page says the camera needs HTTPS", async ({ page, baseURL }) => {
    // What a phone sees at http://<lan-ip>:3000/: not a secure context, no mediaDevices.
    const port = new URL(baseURL!).port;
    await page.goto(`http://insecure.hls-face.test:${port}/`);
    await expect(page.locator("main[data-hydrated=true]")).toBeVisible();
    expect(await page.evaluate(() => window.isSecureContext)).toBe(false);
    const studio = new Studio(page);
    await studio.expectState("error");
    await expect(studio.status).toContainText("camera needs a secure page");
    await expect(studio.status).toContainText("HTTPS");
    await expect(studio.status).not.toContainText("Cannot read properties");
  });

  test("a camera lost mid-session is its own state, and Start tries again", async ({ page }) => {
    const studio = new Studio(page);
    await studio.open();
    await studio.start.click();
    await studio.expectState("live");
    // The browser ends the track when the camera is unplugged or taken by another app.
    await page.evaluate(() => {
      const v = document.querySelector("video[data-testid=preview]") as HTMLVideoElement;
      const track = (v.srcObject as MediaStream).getVideoTracks()[0];
      track.stop();
      track.dispatchEvent(new Event("ended"));
    });
    await studio.expectState("error");
    await expect(studio.status).toContainText("camera stopped");
    await expect(studio.status).not.toContainText("Failed to execute");
    await expect(studio.start).toBeEnabled();
    await studio.start.click();
    await studio.expectState("live");
    await studio.stop.click();
    await studio.expectState("stopped");
  });
});

test("leaving a live session asks first; a stopped one does not", async ({ page, browser }) => {
  const studio = new Studio(page);
  await studio.open();
  await studio.start.click();
  await studio.expectState("live");
  const asked = page.waitForEvent("dialog");
  await page.close({ runBeforeUnload: true });
  const dialog = await asked;
  expect(dialog.type()).toBe("beforeunload");
  await dialog.accept();

  const other = await browser.newPage();
  const stopped = new Studio(other);
  await stopped.open();
  await stopped.start.click();
  await stopped.expectState("live");
  await stopped.stop.click();
  await stopped.expectState("stopped");
  let prompted = false;
  other.on("dialog", (d) => {
    prompted = true;
    void d.accept();
  });
  await other.close({ runBeforeUnload: true });
  await expect.poll(() => other.isClosed()).toBe(true);
  expect(prompted).toBe(false);
});
