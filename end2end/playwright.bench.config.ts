import { defineConfig } from "@playwright/test";
import base from "./playwright.config";

/** The benchmark (scripts/bench): same browser setup as the tests, one long test. */
export default defineConfig({
  ...base,
  testDir: "./bench",
  testMatch: "**/*.bench.ts",
  timeout: 60 * 60 * 1000,
  // No Playwright trace here: its screencast made the browser composite and JPEG-encode every
  // frame for the recorder (GPU process ~47 % of a core instead of ~10 %, browser process 25 %
  // instead of 6 %), load the measured player does not have in a user's browser.
  use: { ...base.use, trace: "off", screenshot: "off" },
});
