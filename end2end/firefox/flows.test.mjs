// The key flows in Firefox ESR (Debian's firefox-esr), driven over WebDriver BiDi with
// puppeteer-core: start → live with boxes → stop → recording; a viewer link in a second
// context. Firefox's fake camera is a plain colour, so the page's camera is replaced by a
// canvas stream of the face clip (scripts/media) before the page's own scripts run.
// Run by scripts/test after Playwright: BASE_URL=http://127.0.0.1:PORT node --test firefox/
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import puppeteer from "puppeteer-core";

const BASE = process.env.BASE_URL ?? "http://127.0.0.1:3000";
const CLIP = readFileSync(new URL("../../target/media/face.webm", import.meta.url)).toString("base64");
const DEADLINE_MS = 60_000;

/** Polls `probe` until `ok(value)`, failing with `what` after the deadline. */
async function until(what, probe, ok = Boolean) {
  const end = Date.now() + DEADLINE_MS;
  let last;
  while (Date.now() < end) {
    last = await probe();
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`${what} (last seen: ${JSON.stringify(last)})`);
}

/** Runs in the page before its scripts: the camera becomes a canvas playing the clip. */
function fakeCamera(base64) {
  navigator.mediaDevices.getUserMedia = async () => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const video = document.createElement("video");
    video.muted = true;
    video.loop = true;
    video.src = URL.createObjectURL(new Blob([bytes], { type: "video/webm" }));
    await video.play();
    const canvas = document.createElement("canvas");
    canvas.width = 640;
    canvas.height = 480;
    const g = canvas.getContext("2d");
    setInterval(() => g.drawImage(video, 0, 0, 640, 480), 33);
    return canvas.captureStream(30);
  };
}

/** The picture of the first element matching `selector` (a video's current frame, or a
 * canvas): which element it is, its mean brightness and its green box pixels. */
function readPicture(page, selector) {
  return page.evaluate((sel) => {
    const el = document.querySelector(sel);
    if (!el) return { element: null, mean: 0, green: 0 };
    const [w, h] = el.localName === "video" ? [el.videoWidth, el.videoHeight] : [el.width, el.height];
    if (!w || !h) return { element: el.localName, mean: 0, green: 0 };
    const c = document.createElement("canvas");
    c.width = w;
    c.height = h;
    const g = c.getContext("2d");
    g.drawImage(el, 0, 0);
    const d = g.getImageData(0, 0, w, h).data;
    let sum = 0;
    let green = 0;
    for (let i = 0; i < d.length; i += 4) {
      sum += (d[i] + d[i + 1] + d[i + 2]) / 3;
      if (d[i + 1] > 180 && d[i] < 100 && d[i + 2] < 100) green++;
    }
    return { element: el.localName, mean: sum / (d.length / 4), green };
  }, selector);
}

/** Green box pixels in the current frame of `video[data-testid=id]`. */
const greenPixels = async (page, id) => (await readPicture(page, `video[data-testid=${id}]`)).green;

/** The camera preview as shown: the painted canvas, or its video as the fallback (whichever
 * is not hidden). */
const SHOWN_PREVIEW = "canvas[data-testid=preview-view]:not([hidden]), video[data-testid=preview]:not([hidden])";

const attr = (page, sel, name) =>
  page.evaluate((s, a) => document.querySelector(s)?.getAttribute(a) ?? null, sel, name);

let browser;
before(async () => {
  browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: process.env.FIREFOX ?? "/usr/bin/firefox-esr",
    headless: true,
    extraPrefsFirefox: {
      "media.navigator.streams.fake": true,
      "media.navigator.permission.disabled": true,
      "media.autoplay.default": 0,
      "media.autoplay.blocking_policy": 0,
    },
  });
});
after(async () => {
  await browser?.close();
});

async function studioPage() {
  const page = await browser.newPage();
  await page.evaluateOnNewDocument(fakeCamera, CLIP);
  await page.goto(`${BASE}/`);
  await until("the page hydrates", () => attr(page, "main", "data-hydrated"), (v) => v === "true");
  await until("the camera is ready", () => page.$eval("[data-testid=status]", (e) => e.textContent), (t) =>
    t.includes("Camera ready"),
  );
  return page;
}

test("Firefox streams its camera back with boxes, stops, and offers the recording", async () => {
  const page = await studioPage();
  await page.click("[data-testid=start]");
  await until("the session goes live", () => attr(page, "[data-testid=status]", "data-state"), (s) => s === "live");
  await until("green box pixels in the played output", () => greenPixels(page, "output"), (n) => n > 200);
  // Firefox has requestVideoFrameCallback: the camera shows painted into the canvas.
  await until("the camera preview painted into its canvas", () => readPicture(page, SHOWN_PREVIEW), (p) => p.element === "canvas" && p.mean > 20);
  await page.click("[data-testid=stop]");
  await until("the session stops", () => attr(page, "[data-testid=status]", "data-state"), (s) => s === "stopped");
  const href = await until("the recording is offered", () => attr(page, "[data-testid=download]", "href"));
  const head = await page.evaluate(async (url) => {
    const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
    return String.fromCharCode(...bytes.slice(4, 8));
  }, href);
  assert.equal(head, "ftyp", "the download is an MP4");
  await page.close();
});

test("Firefox watches a viewer link until the session ends", async () => {
  const page = await studioPage();
  await page.click("[data-testid=start]");
  await until("the session goes live", () => attr(page, "[data-testid=status]", "data-state"), (s) => s === "live");
  const link = await until("a viewer link", () => attr(page, "[data-testid=viewer-link]", "href"));
  const context = await browser.createBrowserContext();
  const viewer = await context.newPage();
  await viewer.goto(link);
  await until("the viewer plays", () => attr(viewer, "[data-testid=viewer-status]", "data-state"), (s) => s === "live");
  await until("the viewer sees the boxes", () => greenPixels(viewer, "viewer"), (n) => n > 200);
  await page.click("[data-testid=stop]");
  await until("the viewer says ended", () => attr(viewer, "[data-testid=viewer-status]", "data-state"), (s) => s === "ended");
  await context.close();
  await page.close();
});
