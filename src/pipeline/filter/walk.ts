// Admission for a consumer with a where filter: walk the log past its
// position (sluice.walk_log_rows, migrations/0015 and 0036), test each
// change of its tables here, and hand the keys that pass to the claim that
// follows (claim_messages_walked / claim_webhook_batches_walked). The claim
// takes them in only if the position has not moved since the walk, so two
// processes walking at once admit each change once.
import type { Pool } from '../../db/pool.js';
import { plainArray } from '../../db/arrays.js';
import type { ConsumerFilter } from './consumer-filter.js';

export interface Walked {
  /** The position the walk started from (int64 as decimal text). */
  fromLsn: string;
  fromIdx: number;
  /** The last change walked: the position after admission. */
  toLsn: string;
  toIdx: number;
  /** The changes that pass, in log order, with their stored payloads (the claim returns none for these: see walkedPayloads). */
  lsns: string[];
  idxs: number[];
  payloads: string[];
  /** Their default group keys and commit times (as Postgres prints them): admission takes them in from these (migrations/0036). */
  groups: Array<string | null>;
  times: string[];
  /** It stopped at the wanted count: more may pass further on. */
  full?: boolean;
}

interface WalkRow {
  from_lsn: string;
  from_idx: number;
  commit_lsn: string;
  commit_idx: number;
  table_name: string;
  payload: string | null;
  group_key: string | null;
  committed_at: string;
}

const WALK = `SELECT from_lsn::text, from_idx, commit_lsn::text, commit_idx, table_name, payload, group_key, committed_at::text
  FROM sluice.walk_log_rows($1, $2::bigint, $3, $4, $5)`;

// A walk reads the log in chunks until `want` changes pass or this many were
// read: a selective filter still moves through the log quickly, and one claim
// stays bounded in time and memory.
const CHUNK = 1_000;
const MAX_WALKED = 10_000;

/**
 * Changes past the consumer's position, filtered, until `want` pass (or the
 * log's end, or MAX_WALKED read); null when there is nothing to walk.
 * `checkAhead`: first count the rows waiting never delivered, and walk nothing
 * while there are too many (see migrations/0018_walk_log_ahead.sql).
 */
export async function walkFiltered(
  pool: Pool,
  consumerId: string,
  want: number,
  filter: ConsumerFilter,
  checkAhead = true,
  /** Go on from here (the end of an earlier walk) rather than from the position. */
  from?: { lsn: string; idx: number },
): Promise<Walked | null> {
  let walked: Walked | null = null;
  let after: [string, number] | [null, null] = from ? [from.lsn, from.idx] : [null, null];
  for (let read = 0; read < MAX_WALKED; ) {
    // The first chunk as long as what is wanted (most filters pass most
    // changes); the later ones longer, for a selective filter.
    const limit = Math.min(read === 0 ? Math.max(want, 100) : CHUNK, CHUNK, MAX_WALKED - read);
    const { rows }: { rows: WalkRow[] } = await pool.query<WalkRow>({ name: 'sluice_walk_log_rows', text: WALK, values: [consumerId, ...after, limit, checkAhead] });
    if (rows.length === 0) break;
    walked ??= { fromLsn: rows[0].from_lsn, fromIdx: rows[0].from_idx, toLsn: '', toIdx: 0, lsns: [], idxs: [], payloads: [], groups: [], times: [] };
    let end: WalkRow = rows[rows.length - 1];
    for (const r of rows) {
      // No payload: another table of the source, or an action the consumer does not take.
      if (r.payload !== null && filter.passes(r.table_name, r.payload)) {
        walked.lsns.push(r.commit_lsn);
        walked.idxs.push(r.commit_idx);
        walked.payloads.push(r.payload);
        walked.groups.push(r.group_key);
        walked.times.push(r.committed_at);
        // The walk ends at the last change wanted: admission takes in no more
        // than the claim can hand out, and the rest is walked again later.
        if (walked.lsns.length >= want) {
          end = r;
          break;
        }
      }
    }
    walked.toLsn = end.commit_lsn;
    walked.toIdx = end.commit_idx;
    after = [end.commit_lsn, end.commit_idx];
    read += rows.length;
    if (walked.lsns.length >= want) {
      walked.full = true;
      break;
    }
    if (rows.length < limit) break;
  }
  return walked;
}

/**
 * A walk started ahead, made the size this claim wants: cut after the
 * want-th key (the rest of the log is walked again later), or, when it
 * stopped full short of it, carried on from its end. Either way it is still
 * one walk from its start: admission takes the keys up to its new end.
 */
async function fitted(
  walked: Walked,
  want: number,
  walkOn: (more: number, from: { lsn: string; idx: number }) => Promise<Walked | null>,
): Promise<Walked> {
  if (walked.lsns.length > want) {
    return {
      ...walked,
      lsns: walked.lsns.slice(0, want),
      idxs: walked.idxs.slice(0, want),
      payloads: walked.payloads.slice(0, want),
      groups: walked.groups.slice(0, want),
      times: walked.times.slice(0, want),
      toLsn: walked.lsns[want - 1],
      toIdx: walked.idxs[want - 1],
      full: true,
    };
  }
  if (walked.lsns.length === want || !walked.full) return walked;
  const more = await walkOn(want - walked.lsns.length, { lsn: walked.toLsn, idx: walked.toIdx });
  return more ? joined(walked, more) : walked;
}

/** One walk from a's start to b's end; b starts where a ends. */
function joined(a: Walked, b: Walked): Walked {
  return {
    ...a,
    lsns: [...a.lsns, ...b.lsns],
    idxs: [...a.idxs, ...b.idxs],
    payloads: [...a.payloads, ...b.payloads],
    groups: [...a.groups, ...b.groups],
    times: [...a.times, ...b.times],
    toLsn: b.toLsn,
    toIdx: b.toIdx,
    full: b.full,
  };
}

/**
 * The keys of a walk after its first n: a walk of its own, from the n-th key
 * to the walk's end, valid once a claim took the first n in whole.
 */
function tail(w: Walked, n: number): Walked {
  return {
    fromLsn: w.lsns[n - 1],
    fromIdx: w.idxs[n - 1],
    toLsn: w.toLsn,
    toIdx: w.toIdx,
    lsns: w.lsns.slice(n),
    idxs: w.idxs.slice(n),
    payloads: w.payloads.slice(n),
    groups: w.groups.slice(n),
    times: w.times.slice(n),
    full: w.full,
  };
}

/**
 * The payload of a claimed row the claim left out (migrations/0027): it
 * handed out a change of this walk, whose payload the walk read.
 */
export function walkedPayloads(w: Walked): (lsn: string, idx: number) => string {
  const byKey = walkedPayloadMap(w);
  return (lsn, idx) => {
    const payload = byKey.get(lsn + ':' + idx);
    if (payload === undefined) throw new Error(`the claim left out the payload of ${lsn}:${idx}, which its walk did not read`);
    return payload;
  };
}

/** The walk's payloads by key, `${lsn}:${idx}`. */
export function walkedPayloadMap(w: Walked): Map<string, string> {
  const byKey = new Map<string, string>();
  for (let i = 0; i < w.lsns.length; i++) byKey.set(w.lsns[i] + ':' + w.idxs[i], w.payloads[i]);
  return byKey;
}

/**
 * The walk as the trailing parameters of the *_walked claim functions: the
 * keys as array literals (src/db/arrays.ts), then their group keys and
 * commit times (text, escaped by pg) for admission to take in without
 * reading the log.
 */
export function walkedParams(w: Walked): unknown[] {
  return [w.fromLsn, w.fromIdx, w.toLsn, w.toIdx, plainArray(w.lsns), plainArray(w.idxs), w.groups, w.times];
}

/**
 * A consumer's walks in this process. The next walk starts as soon as the last
 * claim has committed, so that it runs while the claimed messages are being
 * delivered rather than in front of the next claim (a walk of 900 changes is a
 * few milliseconds of reading and testing, which every claim otherwise waits
 * for). A walk reads the position when it runs, so one started early is as
 * valid as one started later: if the position has moved meanwhile (another
 * process admitted), admission refuses it and nothing is lost.
 *
 * When a walk is full (more is likely), the next one need not even wait
 * for the claim: chain() starts it from the walk's end while the claim runs.
 * It is valid only if that claim takes the walk in whole, moving the
 * position to its end; claimed() keeps it only when the claim handed out
 * every key (so admission ran), else drops it. Were it kept wrongly, the next
 * claim would still refuse it: admission checks the position is where a walk
 * says it starts. A claim of a draining consumer thus waits for no walk: the
 * walk ahead has the claim's whole duration to run (measured: a filtered
 * push drain spent 3 of its 10 s waiting for walks started after claims).
 * A walk ahead that is longer than the claim wants is cut, and what is cut
 * off is kept as the start of the next walk, on the same terms: claims of a
 * pull consumer vary in size (coalesced receives), and cut tails walked again
 * were 30% of a filtered pull drain's walking.
 *
 * It also remembers whether the last claim left any of its walk's keys
 * waiting: only then does the next walk count the rows waiting (the bound on
 * what is taken in ahead), a count that otherwise costs more than the walk.
 * A chained walk skips that count, so it runs only while claims leave
 * nothing waiting. Claims of a consumer are serialised in this process (the
 * pull coalescer, the push worker's loop), so one walk ahead per consumer is
 * enough.
 */
export class WalkAhead {
  // `after`: a chained walk's, the walk at whose end it starts; `rest`: what
  // take() cut off the walk ahead it fitted to a claim (the start of the next).
  private readonly ahead = new Map<string, { filter: ConsumerFilter; walk: Promise<Walked | null>; after?: Walked; rest?: Walked }>();
  // Consumers whose last claim here handed out its whole walk: their next walk need not count.
  private readonly clean = new Set<string>();

  constructor(private readonly pool: Pool) {}

  /** The walk for a claim now: the one started ahead if it found something, else a fresh one. */
  async take(consumerId: string, want: number, filter: ConsumerFilter): Promise<Walked | null> {
    const started = this.ahead.get(consumerId);
    this.ahead.delete(consumerId);
    // Walked with another filter (the consumer changed meanwhile): not this claim's.
    // Nothing found ahead may be stale (changes may have come since): walk again.
    const walked = started?.filter === filter ? await started.walk.catch(() => null) : null;
    if (!walked) return walkFiltered(this.pool, consumerId, want, filter, !this.clean.has(consumerId));
    const fit = await fitted(walked, want, (more, from) => walkFiltered(this.pool, consumerId, more, filter, false, from));
    // Cut to the claim's size: the rest is kept, as a walk chained to this one,
    // rather than walked again (claims of a pull consumer vary in size).
    if (walked.lsns.length > want) {
      const rest = tail(walked, want);
      this.ahead.set(consumerId, { filter, walk: Promise.resolve(rest), after: fit, rest });
    }
    return fit;
  }

  /**
   * After a claim that committed with `walked`: notes whether it handed out
   * every walked key (`taken`: the keys of what it handed out, "lsn:idx"),
   * and, when the walk was full (more is likely), starts the next one.
   */
  claimed(consumerId: string, walked: Walked, taken: ReadonlySet<string>, next: { want: number; filter: ConsumerFilter } | null): void {
    let left = false;
    for (let i = 0; i < walked.lsns.length && !left; i++) left = !taken.has(`${walked.lsns[i]}:${walked.idxs[i]}`);
    if (left) this.clean.delete(consumerId);
    else this.clean.add(consumerId);
    const chained = this.ahead.get(consumerId);
    if (chained?.after === walked) {
      // Every key handed out: admission took this walk in, and the position
      // is at its end, where the chained walk starts.
      if (!left && walked.lsns.length > 0) return;
      this.ahead.delete(consumerId);
    }
    if (!next) return;
    const walk = walkFiltered(this.pool, consumerId, next.want, next.filter, left);
    // A failure here is the next claim's to report: take() walks afresh.
    walk.catch(() => {});
    this.ahead.set(consumerId, { filter: next.filter, walk });
  }

  /**
   * Before the claim that takes `walked`, when the walk was full: starts the
   * next walk from its end now (see the class comment). From that claim's
   * point of view the new walk starts at the walk's end, where admitting it
   * leaves the position.
   */
  chain(consumerId: string, walked: Walked, next: { want: number; filter: ConsumerFilter }): void {
    if (walked.lsns.length === 0) return;
    // What take() cut off this walk starts the next; a walk is chained to it only when it falls short.
    const kept = this.ahead.get(consumerId);
    const rest = kept?.after === walked && kept.filter === next.filter ? (kept.rest ?? null) : null;
    const end = rest ?? walked;
    if (!end.full || (rest && rest.lsns.length >= next.want)) return;
    const from = { lsn: end.toLsn, idx: end.toIdx };
    const walk = walkFiltered(this.pool, consumerId, next.want - (rest?.lsns.length ?? 0), next.filter, false, from).then((w) => {
      const more = w && { ...w, fromLsn: from.lsn, fromIdx: from.idx };
      return rest ? (more ? joined(rest, more) : rest) : more;
    });
    walk.catch(() => {});
    this.ahead.set(consumerId, { filter: next.filter, walk, after: walked });
  }

  /** Forgets a consumer's walk ahead (its claims failed, or it changed). */
  drop(consumerId: string): void {
    this.ahead.delete(consumerId);
    // Unknown what the failed claim left: count next time.
    this.clean.delete(consumerId);
  }
}
