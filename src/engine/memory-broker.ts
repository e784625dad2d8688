import type { Broker, BrokerMessage, Deliver, Delivered } from './broker.js';

/**
 * The single-node broker: a message is delivered synchronously, in the caller's turn, so replies
 * to a connection's requests leave in the order the requests came.
 */
export class MemoryBroker implements Broker {
  readonly name = 'memory';
  private deliver: Deliver | undefined;

  async start(deliver: Deliver): Promise<void> {
    this.deliver = deliver;
  }

  publish(message: BrokerMessage): Delivered {
    if (!this.deliver) throw new Error('broker not started');
    return this.deliver(message);
  }

  async close(): Promise<void> {
    this.deliver = undefined;
  }
}
