// TypeScript types derived from the route JSON schemas, so a route's schema is
// the single source of its request (and reply) types. Written by hand for the
// subset of JSON Schema our routes use: type (or a list of types), const, enum,
// anyOf/oneOf, properties + required, additionalProperties, items. Schemas are
// declared `as const` so their literal shape is visible to these types.
import type { FastifyTypeProvider } from 'fastify';

type Simplify<T> = { [K in keyof T]: T[K] } & {};

type RequiredKeys<S> = S extends { required: readonly (infer R)[] } ? R : never;

type ObjectOf<S> = S extends { properties: infer P }
  ? Simplify<
      { -readonly [K in keyof P as K extends RequiredKeys<S> ? K : never]: FromSchema<P[K]> } & {
        -readonly [K in keyof P as K extends RequiredKeys<S> ? never : K]?: FromSchema<P[K]>;
      } & (S extends { additionalProperties: infer A extends object } ? Record<string, FromSchema<A>> : unknown)
    >
  : S extends { additionalProperties: infer A extends object }
    ? Record<string, FromSchema<A>>
    : Record<string, unknown>;

type FromType<S, T> = T extends 'string'
  ? string
  : T extends 'integer' | 'number'
    ? number
    : T extends 'boolean'
      ? boolean
      : T extends 'null'
        ? null
        : T extends 'array'
          ? S extends { items: infer I }
            ? FromSchema<I>[]
            : unknown[]
          : T extends 'object'
            ? ObjectOf<S>
            : unknown;

export type FromSchema<S> = S extends { const: infer C }
  ? C
  : S extends { enum: readonly (infer E)[] }
    ? E
    : S extends { anyOf: readonly (infer U)[] }
      ? U extends unknown
        ? FromSchema<U>
        : never
      : S extends { oneOf: readonly (infer U)[] }
        ? U extends unknown
          ? FromSchema<U>
          : never
        : S extends { type: readonly (infer T)[] }
          ? T extends unknown
            ? FromType<S, T>
            : never
          : S extends { type: infer T }
            ? FromType<S, T>
            : unknown;

/** `app.withTypeProvider<SchemaTypes>()`: request and reply types from the route schemas. */
export interface SchemaTypes extends FastifyTypeProvider {
  readonly validator: FromSchema<this['schema']>;
  readonly serializer: FromSchema<this['schema']>;
}
