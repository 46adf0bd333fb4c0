import { Module } from '@nestjs/common';
import { readSettings } from '../shared/env.js';
import { WEBHOOK_SECRETS, WebhooksController } from './webhooks.controller.js';

@Module({
  controllers: [WebhooksController],
  providers: [{ provide: WEBHOOK_SECRETS, useFactory: () => readSettings().secrets }],
})
export class AppModule {}
