import { test, expect } from "@playwright/test";
import { Studio } from "./fixtures/studio";
import { expectResumedThenStop, relay, resumedCount } from "./fixtures/relay";

/**
 * The page through deploy/cluster's nginx, which scripts/test starts with two nodes
 * (CLUSTER_URL; CLUSTER_NODES lists `n1=host:port,…`; CLUSTER_BLIP_PORT is a port the nodes
 * accept as a Host, for a relay that can cut the network): the session lands on one node,
 * its viewer link plays in another browser from nginx's cache, and after a network blip
 * the page reconnects through nginx to the node that holds its session.
 */
const cluster = process.env.CLUSTER_URL;
const nodes = new Map(
  (process.env.CLUSTER_NODES ?? "")
    .split(",")
    .filter(Boolean)
    .map((entry) => entry.split("=") as [string, string]),
);
const blipPort = Number(process.env.CLUSTER_BLIP_PORT ?? 0);

test("through the cluster: a session on one node, its viewers from nginx's cache, a blip survived", async ({
  page,
  browser,
  request,
}) => {
  test.skip(!cluster || !blipPort || nodes.size < 2, "needs the cluster scripts/test starts");
  const link = relay(new URL(cluster!), blipPort);
  await link.listen();
  try {
    const studio = new Studio(page);
    await page.goto(`http://127.0.0.1:${blipPort}/`);
    await expect(page.locator("main[data-hydrated=true]")).toBeVisible();
    await studio.start.click();
    await studio.expectState("live");
    await studio.expectPlaying("output", 2);
    const playlist = await studio.playlistUrl();
    const name = /\/hls\/(n\d+)-[0-9a-f]{32}\//.exec(playlist)?.[1] ?? "";
    const node = nodes.get(name);
    expect(node, `the node named in ${playlist}`).toBeTruthy();

    // The viewer link names the same node; another browser plays it through nginx's cache.
    const href = (await page.getByTestId("viewer-link").getAttribute("href"))!;
    expect(href).toContain(`/watch/${name}-`);
    const other = await browser.newContext();
    const viewer = await other.newPage();
    await viewer.goto(href);
    await expect(viewer.getByTestId("viewer-status")).toHaveAttribute("data-state", "live");
    await new Studio(viewer).expectPlaying("viewer", 2);
    const token = href.split("/watch/")[1];
    const part = await request.get(`${cluster}/view/${token}/playlist.m3u8`);
    expect(part.headers()["cache-control"]).toBe("no-cache");
    await other.close();

    // The network drops; the page comes back through nginx to its session's node.
    const origin = `http://${node}`;
    const before = await resumedCount(request, origin);
    link.cut();
    await expectResumedThenStop(studio, request, before, playlist, origin);
  } finally {
    await link.close();
  }
});
