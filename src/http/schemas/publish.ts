// The publish route's request and response (src/http/routes/publish.ts).
import { errorResponses, nameParams } from './common.js';
import { MESSAGE_KEY_MAX } from '../../streams/envelope.js';

export const PUBLISH_MAX_BATCH = 1000;
export const PUBLISH_MAX_KEY = MESSAGE_KEY_MAX;

const messageProperties = {
  subject: { type: 'string', description: 'Dot-separated tokens of A-Z, a-z, 0-9, "_" and "-", such as "orders.new"' },
  data: { description: 'Any JSON value' },
  key: {
    type: 'string',
    minLength: 1,
    maxLength: PUBLISH_MAX_KEY,
    description: "The group key: messages of one key are delivered in order, one at a time (default: the subject)",
  },
  idempotency_key: {
    type: 'string',
    minLength: 1,
    maxLength: PUBLISH_MAX_KEY,
    description: 'Published twice while the stream retains it: stored once (the second answer says duplicate: true)',
  },
};

const message = { type: 'object', additionalProperties: false, properties: messageProperties };

export const publishSchema = {
  summary: 'Publish a message, or a batch of them, to a stream',
  description:
    'The body is one message ({"subject", "data", "key"?, "idempotency_key"?}) or {"messages": [...]} with up to ' +
    `${PUBLISH_MAX_BATCH}. A 200 means every message is durable; a refusal stores none of the batch.`,
  tags: ['streams'],
  params: nameParams,
  body: {
    type: 'object',
    additionalProperties: false,
    properties: {
      ...messageProperties,
      messages: { type: 'array', minItems: 1, maxItems: PUBLISH_MAX_BATCH, items: message },
    },
  },
  response: {
    200: {
      type: 'object',
      additionalProperties: false,
      required: ['data'],
      properties: {
        data: {
          type: 'array',
          description: 'Per message, in order',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['sequence', 'duplicate'],
            properties: {
              sequence: { type: 'integer', description: "The message's position in the stream (metadata.sequence)" },
              duplicate: { type: 'boolean', description: 'Its idempotency_key was published before: nothing new was stored' },
            },
          },
        },
      },
    },
    ...errorResponses,
  },
} as const;
