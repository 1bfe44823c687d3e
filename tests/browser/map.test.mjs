// Browser tests of the public map page, in Debian's headless Chromium driven by
// playwright-core. Starts its own `relai serve` on a fresh SQLite database with the demo.
// Usage: RELAI_BIN=target/debug/relai node tests/browser/map.test.mjs
// Screenshots land in tests/browser/screenshots/ (the CI artifacts).
import { chromium } from "playwright-core";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const bin = process.env.RELAI_BIN || join(here, "../../target/debug/relai");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const shots = join(here, "screenshots");
mkdirSync(shots, { recursive: true });
const dataDir = mkdtempSync(join(tmpdir(), "relai-browser-"));
const port = 20000 + Math.floor(Math.random() * 20000);
const base = `http://127.0.0.1:${port}`;
const env = { ...process.env, RELAI_DATA_DIR: dataDir, RELAI_LOG: "warn" };
const relai = (...args) => execFileSync(bin, args, { env, encoding: "utf8" });

relai("seed", "--demo");
const org = JSON.parse(relai("org", "create", "--name", "SDIS 33", "--kind", "sdis", "--scope", "18:departement:33"));
const account = JSON.parse(relai("account", "create", "--org", org.id, "--role", "authority", "--name", "CTA-CODIS 33"));
const token = relai("token", "issue", "--account", account.id).trim();
const server = spawn(bin, ["serve", "--bind", `127.0.0.1:${port}`], { env, stdio: "inherit" });
for (let i = 0; i < 100; i++) {
  try { if ((await fetch(`${base}/healthz`)).ok) break; } catch { /* not yet */ }
  await new Promise((r) => setTimeout(r, 100));
}

const browser = await chromium.launch({
  executablePath: chromiumPath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const outside = [];
let passed = 0, failed = 0;
async function test(name, body) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "fr-FR" });
  const page = await context.newPage();
  page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("data:")) outside.push(r.url()); });
  try {
    await body(page, context);
    passed++;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAILED - ${name}: ${e.stack || e}`);
    await page.screenshot({ path: join(shots, `failed-${name.replace(/\W+/g, "-")}.png`), fullPage: true }).catch(() => {});
  } finally {
    await context.close();
  }
}
const expect = (cond, message) => { if (!cond) throw new Error(message); };

await test("search a postcode and read the numbers", async (page) => {
  await page.goto(base + "/");
  await page.fill("#q", "43000");
  await page.click("button[type=submit]");
  const link = page.locator('a.tel[href="tel:+33471045112"]').first();
  await link.waitFor({ timeout: 5000 });
  expect((await link.textContent()).trim() === "04 71 04 51 12", "the 18 of the Haute-Loire is shown");
  expect(await page.isVisible("#demo-banner"), "the demo is labelled");
  const text = await page.textContent("#results");
  expect(text.includes("Publié par SDIS 43"), "provenance is visible");
  await page.screenshot({ path: join(shots, "desktop-lookup.png"), fullPage: true });
});

await test("search a commune by name", async (page) => {
  await page.goto(base + "/");
  await page.fill("#q", "sens");
  await page.click("button[type=submit]");
  await page.click('#suggestions button:has-text("Sens (Yonne)")');
  await page.locator('a.tel[href="tel:+33386951417"]').waitFor({ timeout: 5000 });
});

await test("click a département on the map", async (page) => {
  await page.goto(base + "/");
  await page.locator('#map path[data-code="89"]').waitFor({ timeout: 5000 });
  expect((await page.getAttribute('#map path[data-code="89"]', "class")) === "outage", "the Yonne is in outage for the 18");
  expect((await page.getAttribute('#map path[data-code="33"]', "class")) === "outage", "the national outage colours Gironde too");
  await page.click('#map path[data-code="89"]');
  await page.locator('#departement a.tel[href="tel:+33386482778"]').waitFor({ timeout: 5000 });
  // The keyboard works too.
  await page.focus('#map path[data-code="43"]');
  await page.keyboard.press("Enter");
  await page.locator('#departement a.tel[href="tel:+33471045112"]').waitFor({ timeout: 5000 });
  await page.screenshot({ path: join(shots, "desktop-map.png"), fullPage: true });
});

await test("a number published through the API appears without reload", async (page) => {
  await page.goto(base + "/");
  await page.fill("#q", "33000");
  await page.click("button[type=submit]");
  await page.locator("#results .commune").waitFor({ timeout: 5000 });
  expect(!(await page.textContent("#results")).includes("05 56 12 34 56"), "not there before");
  const r = await fetch(`${base}/v1/numbers`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({ service: "18", territory: { kind: "departement", code: "33" }, phone: "05 56 12 34 56", label: "CTA-CODIS Gironde" }),
  });
  expect(r.status === 201, `published (${r.status})`);
  await page.locator('#results a.tel[href="tel:+33556123456"]').waitFor({ timeout: 5000 });
  expect((await page.textContent("#updated")).startsWith("Mis à jour à"), "says when it was updated");
});

await test("phone size is readable", async (page, context) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(base + "/");
  await page.fill("#q", "Sens");
  await page.click("button[type=submit]");
  await page.click('#suggestions button:has-text("Sens (Yonne)")');
  await page.locator('a.tel[href="tel:+33386951417"]').waitFor({ timeout: 5000 });
  const box = await page.locator('a.tel[href="tel:+33386951417"]').boundingBox();
  expect(box.height >= 44 && box.x + box.width <= 390, `a large tap target inside the screen (${JSON.stringify(box)})`);
  await page.screenshot({ path: join(shots, "phone-lookup.png") });
  await page.screenshot({ path: join(shots, "phone-lookup-full.png"), fullPage: true });
});

await test("no serious accessibility violation (axe-core)", async (page) => {
  await page.goto(base + "/");
  await page.fill("#q", "89100");
  await page.click("button[type=submit]");
  await page.locator("#results .commune").first().waitFor({ timeout: 5000 });
  await page.addScriptTag({ content: readFileSync(join(here, "node_modules/axe-core/axe.min.js"), "utf8") });
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
  const serious = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(serious.length === 0, serious.map((v) => `${v.id}: ${v.help} (${v.nodes.length})`).join("; "));
});

await test("the page makes no request outside the server", async () => {
  expect(outside.length === 0, `outside requests: ${outside.join(", ")}`);
});

await browser.close();
server.kill("SIGTERM");
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
