import { BadRequestException, Controller, HttpCode, Inject, Post, Req, type RawBodyRequest } from '@nestjs/common';
import type { Request } from 'express';
import { verifyWebhook, WebhookVerificationError, type VerifiedWebhook } from 'sluice/webhooks';
import { handleDelivery, rejection, type Outcome } from '../shared/handler.js';

export const WEBHOOK_SECRETS = 'WEBHOOK_SECRETS';

@Controller('webhooks')
export class WebhooksController {
  // An explicit token: injection then needs no emitted type metadata, which
  // tsx/esbuild, Vite and SWC-without-plugins do not produce.
  constructor(@Inject(WEBHOOK_SECRETS) private readonly secrets: string[]) {}

  @Post()
  @HttpCode(200) // Nest answers a POST with 201 by default; any 2xx acks, 200 is the plain choice
  receive(@Req() req: RawBodyRequest<Request>): Outcome {
    let webhook: VerifiedWebhook;
    try {
      // req.body is Nest's parsed JSON, useless for verification; req.rawBody
      // holds the exact bytes because main.ts creates the app with rawBody: true.
      webhook = verifyWebhook(req.rawBody ?? '', req.headers, this.secrets);
    } catch (err) {
      if (err instanceof WebhookVerificationError) throw new BadRequestException(rejection(err));
      throw err; // Nest answers 500; Sluice retries
    }
    return handleDelivery(webhook);
  }
}
