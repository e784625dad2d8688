/** The embeddable library: the server, its parts, and the protocol. */
export { HubbubServer, type HubbubOptions } from './server.js';
export { loadConfig, defaults, settings, type Config } from './config.js';
export { Hub } from './hub/hub.js';
export type { Broker, BrokerMessage } from './engine/broker.js';
export { MemoryBroker } from './engine/memory-broker.js';
export type { Transport, TransportHandler } from './transport/transport.js';
export * from './protocol/index.js';
export { VERSION } from './version.js';
