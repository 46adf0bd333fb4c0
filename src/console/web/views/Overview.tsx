// Overview: every source (capture position, slot lag, changes captured per
// minute) and every consumer the token may see (state, backlog, dead letters,
// deliveries per minute over the last hour, oldest pending age), from one
// GET /api/overview every few seconds.
import { api } from '../api';
import { bytes, count, duration, rate } from '../format';
import { usePoll } from '../poll';
import { href } from '../router';
import type { Me, Overview as OverviewData } from '../types';
import { Loading, StateBadge } from '../ui/bits';
import { Problem } from '../ui/Field';
import { Sparkline } from '../ui/Sparkline';

/** Slot lag as far as this gateway process knows it (bytes only where it streams the slot). */
function lag(lagBytes: number | null, lagSeconds: number | null): string {
  const parts = [lagBytes !== null ? bytes(lagBytes) : '', lagSeconds !== null ? duration(lagSeconds * 1000) : ''].filter(Boolean);
  return parts.length ? parts.join(', ') : '–';
}

export function Overview({ me }: { me: Me }) {
  const { data, error } = usePoll(() => api<OverviewData>('GET', '/overview'), []);
  if (!data) return error ? <Problem summary={error.summary} /> : <Loading what="the overview" />;
  const lastMinute = (v: number[]) => (v.length > 1 ? v[v.length - 2] / 60 : 0);
  return (
    <>
      <h1>Overview</h1>
      {error ? <Problem summary={error.summary} /> : null}
      {me.admin ? (
        <section aria-labelledby="sources-h">
          <h2 id="sources-h">Sources</h2>
          {data.sources.length === 0 ? (
            <p>
              No sources yet. <a href={href('sources')}>Add one</a>.
            </p>
          ) : (
            <table>
              <thead>
                <tr>
                  <th scope="col">Source</th>
                  <th scope="col">Capture</th>
                  <th scope="col">Position</th>
                  <th scope="col">Slot lag</th>
                  <th scope="col">Captured (last hour)</th>
                </tr>
              </thead>
              <tbody>
                {data.sources.map((s) => (
                  <tr key={s.name}>
                    <th scope="row">
                      <a href={href('sources', s.name)}>{s.name}</a>
                    </th>
                    <td>
                      <StateBadge state={s.status} />
                      {s.last_error ? <p class="error-text">{s.last_error}</p> : null}
                    </td>
                    <td>
                      <code>{s.position ?? '–'}</code>
                    </td>
                    <td>{lag(s.lag_bytes, s.lag_seconds)}</td>
                    <td>
                      <div class="spark-cell">
                        <Sparkline values={s.captured_per_minute} label={`Changes captured per minute by ${s.name}`} />
                        <span>{rate(lastMinute(s.captured_per_minute))}</span>
                      </div>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
      ) : null}
      <section aria-labelledby="consumers-h">
        <h2 id="consumers-h">Consumers</h2>
        {data.consumers.length === 0 ? (
          <p>{me.admin ? <>No consumers yet. <a href={href('consumers', 'new')}>Create one</a>.</> : 'This token names no consumer.'}</p>
        ) : (
          <table class="consumers">
            <thead>
              <tr>
                <th scope="col">Consumer</th>
                <th scope="col">Kind</th>
                <th scope="col">State</th>
                <th scope="col" class="num">Pending</th>
                <th scope="col" class="num">In flight</th>
                <th scope="col" class="num">Dead letters</th>
                <th scope="col">Delivered (last hour)</th>
                <th scope="col">Oldest pending</th>
              </tr>
            </thead>
            <tbody>
              {data.consumers.map((c) => (
                <tr key={c.name}>
                  <th scope="row">
                    <a href={href('consumers', c.name)}>{c.name}</a>
                  </th>
                  <td>{c.kind}</td>
                  <td>
                    <StateBadge state={c.state} />
                  </td>
                  <td class="num">
                    {c.pending_at_least ? <span title="at least: the consumer's page counts them all">≥ </span> : null}
                    {count(c.pending)}
                  </td>
                  <td class="num">{count(c.in_flight)}</td>
                  <td class={`num${c.dead_lettered ? ' attention' : ''}`}>{count(c.dead_lettered)}</td>
                  <td>
                    <div class="spark-cell">
                      <Sparkline values={c.delivered_per_minute} label={`Messages delivered per minute to ${c.name}`} />
                      <span>{rate(c.delivered_per_second)}</span>
                    </div>
                  </td>
                  <td>{duration(c.oldest_pending_age_ms)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <p class="updated" aria-live="off">
        Updated {new Date(data.generated_at).toLocaleTimeString()}
      </p>
    </>
  );
}
