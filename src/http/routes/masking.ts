// Secrets never leave the API in full (shared/spec/webhooks.md, "Safety"):
// webhook secrets show as `whsec_…abcd`, custom header values as a fixed mask,
// a connection string without its password. A masked value sent back in a
// PATCH (the natural GET → edit → PATCH round trip) keeps the stored value.
import { maskUrl } from '../../log.js';
import { maskSecret } from '../../signing/secrets.js';

export const HEADER_MASK = '********';
const PASSWORD_MASK = '****';

// Connection strings are masked by the same function as in logs and plans.
export { maskUrl };

/** Removes a URL's password from free text (an error message that quotes the URL). */
export function scrubPassword(text: string, url: string | undefined): string {
  if (!url) return text;
  try {
    const password = decodeURIComponent(new URL(url).password);
    return password ? text.split(password).join(PASSWORD_MASK) : text;
  } catch {
    return text;
  }
}

export function maskHeaders(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.keys(headers).map((name) => [name, HEADER_MASK]));
}

export const maskSecrets = (secrets: string[]) => secrets.map(maskSecret);

/** Masked secrets in `incoming` replaced by the stored secrets they stand for. */
export function restoreSecrets(incoming: unknown, stored: string[]): unknown {
  if (!Array.isArray(incoming)) return incoming;
  return incoming.map((s) => (typeof s === 'string' ? (stored.find((t) => t !== s && maskSecret(t) === s) ?? s) : s));
}

/** Header values equal to the mask replaced by the stored value of the same header. */
export function restoreHeaders(incoming: unknown, stored: Record<string, string>): unknown {
  if (!incoming || typeof incoming !== 'object' || Array.isArray(incoming)) return incoming;
  return Object.fromEntries(
    Object.entries(incoming).map(([name, value]) => [name, value === HEADER_MASK && name in stored ? stored[name] : value]),
  );
}

export function restoreUrl(incoming: unknown, stored: string | undefined): unknown {
  return stored !== undefined && typeof incoming === 'string' && incoming === maskUrl(stored) && incoming !== stored ? stored : incoming;
}
