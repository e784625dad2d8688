/**
 * JSON encodings of the server pushes, built by string concatenation so that the hot path
 * stringifies a payload once, whatever the number of recipients.
 */
import type { ClientInfo, Json, Sender } from '../protocol/frames.js';

/** `{"type":"message","channel":…,"pattern":` — the pattern follows, then the tail. */
export function encodeMessageHead(channel: string): string {
  return `{"type":"message","channel":${JSON.stringify(channel)},"pattern":`;
}

/** The rest of a `message` frame after its pattern. */
export function encodeMessageTail(data: Json, kind: string, from: Sender, ts: number): string {
  return `,"data":${JSON.stringify(data)},"kind":${JSON.stringify(kind)},"from":${JSON.stringify(from)},"ts":${ts}}`;
}

export function encodePush(type: 'direct' | 'broadcast', data: Json, kind: string, from: Sender, ts: number): string {
  return `{"type":"${type}","data":${JSON.stringify(data)},"kind":${JSON.stringify(kind)},"from":${JSON.stringify(from)},"ts":${ts}}`;
}

export function encodePresenceEvent(type: 'join' | 'leave', channel: string, client: ClientInfo): string {
  return JSON.stringify({ type, channel, client });
}
