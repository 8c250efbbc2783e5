import { test, expect } from "@playwright/test";
import AxeBuilder from "@axe-core/playwright";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { Studio } from "./fixtures/studio";
import { OwnServer, root } from "./fixtures/own_server";

// A server whose operator set [auth] passphrase: the page asks for it in plain words, says
// when it is wrong, and Start works once it is right. Viewer links need nothing.
const passphrase = "correct horse battery";
const hash = execFileSync(path.join(root, "target/debug/hls-face"), ["hash-passphrase"], {
  input: `${passphrase}\n`,
})
  .toString()
  .trim();
const server = new OwnServer(Number(process.env.AUTH_PORT ?? 3392), [
  "[auth]",
  'mode = "passphrase"',
  `passphrase-hash = "${hash}"`,
]);

test.beforeAll(async () => {
  await server.start();
});

test.afterAll(async () => {
  await server.stop();
});

test("the page asks for the passphrase, says when it is wrong, and streams once it is right", async ({ browser }) => {
  const context = await browser.newContext({ baseURL: server.base });
  const page = await context.newPage();
  const studio = new Studio(page);
  await studio.open();
  const form = page.getByTestId("sign-in");
  await expect(form).toBeVisible();
  await expect(form).toContainText("passphrase");
  await expect(studio.status).toContainText("sign in below");
  await expect(studio.start).toBeDisabled();
  await expect(page.getByTestId("start-reason")).toContainText("sign in");
  const violations = (await new AxeBuilder({ page }).analyze()).violations.filter(
    (v) => v.impact === "serious" || v.impact === "critical",
  );
  expect(violations.map((v) => v.id)).toEqual([]);

  await page.getByTestId("secret").fill("not it");
  await page.getByTestId("sign-in-button").click();
  await expect(page.getByTestId("sign-in-error")).toHaveText("That passphrase is not right.");
  await page.screenshot({ path: "../target/auth-sign-in.png" });
  await expect(studio.start).toBeDisabled();

  await page.getByTestId("secret").fill(passphrase);
  await page.getByTestId("sign-in-button").click();
  await expect(form).toBeHidden();
  await expect(studio.status).toContainText("Signed in");
  await expect(studio.start).toBeEnabled();
  await studio.start.click();
  await studio.expectState("live");

  // The viewer link is a capability: another browser, never signed in, watches.
  const href = (await page.getByTestId("viewer-link").getAttribute("href"))!;
  const other = await browser.newContext();
  const viewer = await other.newPage();
  await viewer.goto(href);
  await expect(viewer.getByTestId("viewer-status")).toHaveAttribute("data-state", "live");
  await other.close();

  // A reload keeps the sign-in (its cookie), until it expires.
  await studio.stop.click();
  await studio.expectState("stopped");
  await page.reload();
  await expect(page.locator("main[data-hydrated=true]")).toBeVisible();
  await expect(studio.status).toContainText("Camera ready");
  await expect(form).toBeHidden();
  await expect(studio.start).toBeEnabled();
  await context.close();
});
