import type { Broker, BrokerMessage, Deliver } from './broker.js';

/** The single-node broker: a publication is delivered synchronously, in the caller's turn. */
export class MemoryBroker implements Broker {
  readonly name = 'memory';
  private deliver: Deliver | undefined;

  async start(deliver: Deliver): Promise<void> {
    this.deliver = deliver;
  }

  publish(message: BrokerMessage): Promise<number | undefined> {
    if (!this.deliver) return Promise.reject(new Error('broker not started'));
    try {
      return Promise.resolve(this.deliver(message));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async close(): Promise<void> {
    this.deliver = undefined;
  }
}
