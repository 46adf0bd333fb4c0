// Schema pieces shared by the route schemas.

/** The one error shape (src/http/errors.ts). */
export const errorSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['summary'],
  properties: {
    summary: { type: 'string' },
    validation_errors: { type: 'object', additionalProperties: { type: 'array', items: { type: 'string' } } },
    request_id: { type: 'string' },
  },
} as const;

/** Error responses every API route may give, for the OpenAPI document and the serializer. */
export const errorResponses = { '4xx': errorSchema, '5xx': errorSchema } as const;

/** A resource name or id in a path; an unknown one is a 404, not a validation error. */
export const nameParams = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: { name: { type: 'string', minLength: 1, maxLength: 200 } },
} as const;
