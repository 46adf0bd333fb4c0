// API token routes: request and response schemas (and, through FromSchema, their types).
import { errorResponses } from './common.js';

const consumerList = {
  type: 'array',
  description: 'Consumer names whose pull routes the token may call. Omit for an admin token.',
  minItems: 1,
  maxItems: 1000,
  uniqueItems: true,
  items: { type: 'string', minLength: 1, maxLength: 200 },
} as const;

const tokenProperties = {
  id: { type: 'string', format: 'uuid' },
  name: { type: 'string' },
  admin: { type: 'boolean' },
  consumers: { type: ['array', 'null'], items: { type: 'string' } },
  hint: { type: 'string', description: 'The first characters of the token, to tell tokens apart.' },
  created_at: { type: 'string', format: 'date-time' },
  last_used_at: {
    type: ['string', 'null'],
    format: 'date-time',
    description: 'When the token was last used, to the minute (recorded at most once a minute); null: never.',
  },
} as const;

const tokenSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'name', 'admin', 'consumers', 'hint', 'created_at', 'last_used_at'],
  properties: tokenProperties,
} as const;

export const createTokenSchema = {
  summary: 'Create an API token (the secret is shown in this response only)',
  tags: ['tokens'],
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['name'],
    properties: { name: { type: 'string', minLength: 1, maxLength: 200 }, consumers: consumerList },
  },
  response: {
    201: {
      type: 'object',
      additionalProperties: false,
      required: [...tokenSchema.required, 'token'],
      properties: { ...tokenProperties, token: { type: 'string', description: 'The secret; store it now.' } },
    },
    ...errorResponses,
  },
} as const;

export const listTokensSchema = {
  summary: 'List API tokens (never their secrets)',
  tags: ['tokens'],
  response: {
    200: { type: 'object', additionalProperties: false, required: ['data'], properties: { data: { type: 'array', items: tokenSchema } } },
    ...errorResponses,
  },
} as const;

export const deleteTokenSchema = {
  summary: 'Revoke an API token (effective at once)',
  tags: ['tokens'],
  params: {
    type: 'object',
    additionalProperties: false,
    required: ['id'],
    properties: { id: { type: 'string', minLength: 1, maxLength: 200 } },
  },
  response: { 204: { type: 'null', description: 'Revoked.' }, ...errorResponses },
} as const;
