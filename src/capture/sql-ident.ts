// Identifiers cannot be $n parameters in DDL; they are quoted here, once.
export function quoteIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

/** "public.orders" → "public"."orders" */
export function quoteTable(qualified: string): string {
  const dot = qualified.indexOf('.');
  return dot < 0 ? quoteIdent(qualified) : quoteIdent(qualified.slice(0, dot)) + '.' + quoteIdent(qualified.slice(dot + 1));
}

export function splitTable(qualified: string): { schema: string; table: string } {
  const dot = qualified.indexOf('.');
  return dot < 0 ? { schema: 'public', table: qualified } : { schema: qualified.slice(0, dot), table: qualified.slice(dot + 1) };
}
