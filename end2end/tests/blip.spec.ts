import { test, expect } from "@playwright/test";
import { Studio } from "./fixtures/studio";
import { relay } from "./fixtures/relay";

async function resumedCount(request: import("@playwright/test").APIRequestContext): Promise<number> {
  const text = await (await request.get("/metrics")).text();
  return Number(/^hls_face_sessions_resumed_total (\d+)/m.exec(text)?.[1] ?? NaN);
}

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
    await expect.poll(() => resumedCount(request), { message: "the session was resumed" }).toBe(before + 1);
    await expect(studio.status).not.toContainText("reconnecting");
    expect(await studio.state()).toBe("live");
    expect(await studio.playlistUrl(), "the same session and playlist").toBe(playlist);
    await studio.expectPlaying("output", 2);

    await studio.stop.click();
    await studio.expectState("stopped");
    await expect(page.getByTestId("download")).toBeVisible();
  } finally {
    await link.close();
  }
});
