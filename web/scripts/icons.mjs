// Renders public/icon.svg to the PNG icons the web app manifest lists (run once after changing
// the SVG: `node scripts/icons.mjs`; the PNGs are committed). Uses Debian's Chromium.
import { readFileSync } from 'node:fs';
import { CHROMIUM_ARGS, CHROMIUM } from '../e2e/harness.mjs';
import { chromium } from 'playwright-core';

const svg = readFileSync(new URL('../public/icon.svg', import.meta.url), 'utf8');
const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
for (const size of [192, 512]) {
  const page = await browser.newPage({ viewport: { width: size, height: size } });
  await page.setContent(`<style>html,body{margin:0;background:transparent}svg{width:${size}px;height:${size}px;display:block}</style>${svg}`);
  await page.screenshot({ path: new URL(`../public/icon-${size}.png`, import.meta.url).pathname, omitBackground: true });
  await page.close();
}
await browser.close();
