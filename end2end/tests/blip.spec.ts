import { test, expect } from "@playwright/test";
import { Studio } from "./fixtures/studio";
import { expectResumedThenStop, relay, resumedCount } from "./fixtures/relay";

test("a network blip mid-session is survived: same session, same stream, recording kept", async ({ page, request }) => {
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
    const playlist = await studio.playlistUrl();
    const before = await resumedCount(request);

    link.cut();

    // The page reconnects on its own and the server takes the new socket for the session.
    await expectResumedThenStop(studio, request, before, playlist);
  } finally {
    await link.close();
  }
});
