/**
 * The live playlist read by a parser we did not write (npm `hls-parser`): the LL-HLS rules
 * RFC 8216bis sets hold in every reload while a session runs, and after Stop the ended
 * playlist still lists every segment for a client that ignores parts.
 */
import { test, expect } from "@playwright/test";
import * as HLS from "hls-parser";
import { Studio } from "./fixtures/studio";

// Strict: anything the parser finds invalid (it only logs it otherwise) is an error.
HLS.setOptions({ strictMode: true });

/** Rules a live LL-HLS media playlist must keep; what broke, or an empty list. */
function violations(text: string): string[] {
  const out: string[] = [];
  let p: HLS.types.MediaPlaylist;
  try {
    p = HLS.parse(text) as HLS.types.MediaPlaylist;
  } catch (e) {
    return [`hls-parser (strict): ${(e as Error).message}`];
  }
  if (p.isMasterPlaylist) return ["a master playlist"];
  const target = p.partTargetDuration;
  const holdBack = p.lowLatencyCompatibility?.partHoldBack;
  if (target === undefined) return ["no PART-TARGET"];
  if (!p.lowLatencyCompatibility?.canBlockReload) out.push("no CAN-BLOCK-RELOAD");
  if (holdBack === undefined || holdBack < 2 * target - 1e-3) out.push(`PART-HOLD-BACK ${holdBack} < 2 × ${target}`);
  let msn: number | undefined;
  for (const s of p.segments) {
    if (msn !== undefined && s.mediaSequenceNumber !== msn + 1) out.push(`segment ${s.mediaSequenceNumber} after ${msn}`);
    msn = s.mediaSequenceNumber;
    if (s.duration > p.targetDuration + 1e-3) out.push(`segment ${msn} lasts ${s.duration}`);
    s.parts.forEach((part, i) => {
      if (part.hint) return;
      if ((part.duration ?? Infinity) > target + 1e-3) out.push(`part ${msn}.${i} lasts ${part.duration} > ${target}`);
      // A part that starts a segment starts with its keyframe.
      if (i === 0 && !part.independent) out.push(`part ${msn}.0 not INDEPENDENT`);
    });
  }
  return out;
}

test("the live playlist keeps the LL-HLS rules in every reload, read by an independent parser", async ({ page, request }) => {
  const studio = new Studio(page);
  await studio.open();
  await studio.start.click();
  await studio.expectState("live");
  const url = await studio.playlistUrl();
  let parts = 0;
  let reloads = 0;
  // Reloads as a player makes them, at least three, until the stream has a few complete
  // segments (a slow start may have them by the first reload already).
  await expect
    .poll(
      async () => {
        const text = await (await request.get(url)).text();
        expect(violations(text), text).toEqual([]);
        const p = HLS.parse(text) as HLS.types.MediaPlaylist;
        parts = Math.max(parts, ...p.segments.map((s) => s.parts.length));
        reloads += 1;
        return reloads >= 3 && p.segments.filter((s) => s.uri).length >= 3;
      },
      { message: "three reloads, and three complete segments in the live playlist", timeout: 30_000 },
    )
    .toBe(true);
  expect(parts, "parts of a frame or two: many to a segment").toBeGreaterThanOrEqual(10);

  await studio.stop.click();
  await studio.expectState("stopped");
  // Ended: ENDLIST, and every listed segment is whole, for players that ignore parts.
  const ended = HLS.parse(await (await request.get(url)).text()) as HLS.types.MediaPlaylist;
  expect(ended.endlist).toBe(true);
  expect(ended.segments.length).toBeGreaterThan(0);
  for (const s of ended.segments) {
    expect(s.uri, `segment ${s.mediaSequenceNumber} has a URI`).toBeTruthy();
    const bytes = await (await request.get(new URL(s.uri, new URL(url, page.url())).toString())).body();
    expect(bytes.length).toBeGreaterThan(100);
  }
});
