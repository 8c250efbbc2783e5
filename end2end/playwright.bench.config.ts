import { defineConfig } from "@playwright/test";
import base from "./playwright.config";

/** The benchmark (scripts/bench): same browser setup as the tests, one long test. */
export default defineConfig({
  ...base,
  testDir: "./bench",
  testMatch: "**/*.bench.ts",
  timeout: 60 * 60 * 1000,
});
