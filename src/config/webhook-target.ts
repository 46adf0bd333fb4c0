// Save-time half of the SSRF guard (src/push/ssrf.ts): a webhook URL whose host
// is a literal address the guard would refuse is refused when the consumer is
// saved (YAML or API), rather than accepted and then failed at every delivery.
// Hostnames are left to the delivery-time check, since what they resolve to can
// change. The host is read as WHATWG URL parsing reads it, as undici does
// before dialling, so "http://2130706433/" and "http://0x7f.1/" are 127.0.0.1.
import { parseCidr, parseIp } from '../push/ip.js';
import { blockedKind } from '../push/special-addresses.js';
import { issue, type PathSegment, type RawIssue } from './errors.js';
import type { YamlWebhook } from './schema.js';

/** Reports `url` (under `at`) when its host is a refused literal that allow_private_ranges does not cover. */
export function checkWebhookTarget(webhook: YamlWebhook, at: PathSegment[], issues: RawIssue[]): void {
  let host: string;
  try {
    host = new URL(webhook.url).hostname;
  } catch {
    return; // the schema has already reported it
  }
  const address = host.startsWith('[') ? host.slice(1, -1) : host;
  const ip = parseIp(address);
  if (!ip) return;
  const kind = blockedKind(ip, (webhook.allow_private_ranges ?? []).map(parseCidr));
  if (!kind) return;
  const example = `${address}/${address.includes(':') ? 128 : 32}`;
  issues.push(issue([...at, 'url'], `host ${address} is ${kind}, refused unless webhook.allow_private_ranges covers it (e.g. "${example}")`));
}
