import { test, expect, type Page } from "@playwright/test";
import AxeBuilder from "@axe-core/playwright";
import { Studio } from "./fixtures/studio";

// axe-core finds no serious or critical violation on the studio and viewer pages, at a
// desktop and a phone width; nothing overflows sideways from 320 px up; focus stays on a
// sensible control when Start and Stop disable themselves.
const SIZES = [
  { name: "desktop", width: 1280, height: 800 },
  { name: "phone", width: 320, height: 640 },
];

async function seriousViolations(page: Page) {
  const results = await new AxeBuilder({ page }).analyze();
  return results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

async function horizontalOverflow(page: Page) {
  return page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
}

test.describe("accessibility", () => {
  for (const size of SIZES) {
    test(`studio and viewer pages at ${size.name} size`, async ({ page, browser }) => {
      await page.setViewportSize({ width: size.width, height: size.height });
      const studio = new Studio(page);
      await studio.open();
      await expect(studio.status).toContainText("Camera ready");
      expect(await seriousViolations(page)).toEqual([]);
      expect(await horizontalOverflow(page)).toBeLessThanOrEqual(0);

      await studio.start.click();
      await studio.expectState("live");
      // Start disabled itself: focus moved to Stop, not to the page.
      await expect(studio.stop).toBeFocused();
      expect(await seriousViolations(page)).toEqual([]);
      expect(await horizontalOverflow(page)).toBeLessThanOrEqual(0);
      const copy = page.getByTestId("copy-viewer-link");
      const box = (await copy.boundingBox())!;
      expect(Math.min(box.width, box.height)).toBeGreaterThanOrEqual(24);

      const href = (await page.getByTestId("viewer-link").getAttribute("href"))!;
      const other = await browser.newContext({ viewport: { width: size.width, height: size.height } });
      const viewerPage = await other.newPage();
      await viewerPage.goto(href);
      await expect(viewerPage.getByTestId("viewer-status")).toHaveAttribute("data-state", "live");
      if (size.name === "desktop") {
        // The README's viewer screenshot (docs/viewer.png is a copy of this).
        await new Studio(viewerPage).expectPlaying("viewer");
        await viewerPage.screenshot({ path: "../target/viewer-live.png" });
      }
      expect(await seriousViolations(viewerPage)).toEqual([]);
      expect(await horizontalOverflow(viewerPage)).toBeLessThanOrEqual(0);

      await studio.stop.click();
      await expect(page.getByTestId("status")).toBeFocused();
      await studio.expectState("stopped");
      await expect(viewerPage.getByTestId("viewer-status")).toHaveAttribute("data-state", "ended", {
        timeout: 3000,
      });
      expect(await seriousViolations(viewerPage)).toEqual([]);
      expect(await horizontalOverflow(viewerPage)).toBeLessThanOrEqual(0);
      await other.close();
    });
  }

  test("the page has a favicon", async ({ request }) => {
    const icon = await request.get("/favicon.svg");
    expect(icon.status()).toBe(200);
    expect(await icon.text()).toContain("<svg");
  });
});
