// Receiving Sluice webhooks with NestJS 11 (Express platform).
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { readSettings } from '../shared/env.js';
import { log } from '../shared/handler.js';
import { AppModule } from './app.module.js';

const { port, host } = readSettings();
// rawBody: true keeps the received bytes on req.rawBody next to the parsed req.body.
const app = await NestFactory.create<NestExpressApplication>(AppModule, { rawBody: true, logger: ['error', 'warn'] });
// The default JSON limit (100 kB) is smaller than a full batch can be; with
// rawBody on, this parser keeps filling req.rawBody too.
app.useBodyParser('json', { limit: '10mb' });
await app.listen(port, host);
log({ event: 'listening', url: `${await app.getUrl()}/webhooks` });
