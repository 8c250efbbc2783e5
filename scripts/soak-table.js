// Turns the soak CSV into a drift table (first vs last 10 % of samples after 1 minute).
const rows = require("fs").readFileSync(process.argv[2], "utf8").trim().split("\n").slice(1).map((l) => l.split(",").map(Number));
const col = (i) => rows.map((r) => r[i]);
const warm = rows.filter((r) => r[0] >= 1);
const first = warm.slice(0, Math.max(1, Math.floor(warm.length / 10)));
const last = warm.slice(-Math.max(1, Math.floor(warm.length / 10)));
const avg = (rs, i) => rs.reduce((a, r) => a + r[i], 0) / rs.length;
const names = ["RSS MB", "CPU %", "open files", "child processes", "session folders"];
console.log("| metric | first 10 % (after 1 min) | last 10 % | max | drift % |\n|---|---|---|---|---|");
names.forEach((n, k) => {
  const i = k + 1;
  const a = avg(first, i), b = avg(last, i);
  console.log(`| ${n} | ${a.toFixed(1)} | ${b.toFixed(1)} | ${Math.max(...col(i)).toFixed(1)} | ${a ? ((100 * (b - a)) / a).toFixed(1) : "—"} |`);
});
console.log(`\n${rows.length} samples over ${rows.at(-1)[0]} min.`);
