# frozen_string_literal: true

RSpec.describe 'Polyphony synchronisation classes' do
  describe Polyphony::Queue do
    it 'hands items to waiting fibers in order' do
      queue = described_class.new
      consumers = 2.times.map { |i| spin { [i, queue.shift] } }
      snooze
      expect(queue.num_waiting).to eq(2)
      queue << :a << :b
      expect(consumers.map(&:await)).to eq([[0, :a], [1, :b]])
    end

    it 'supports shift_all, clear, size, empty?, unshift, delete' do
      queue = described_class.new
      queue.push(1).push(2).unshift(0)
      expect(queue.size).to eq(3)
      expect(queue.shift_all).to eq([0, 1, 2])
      expect(queue).to be_empty
      queue << 1 << 2 << 1
      queue.delete(1)
      expect(queue.shift_all).to eq([2])
      queue << 3
      queue.clear
      expect(queue.size).to eq(0)
    end

    it 'makes pushers wait when capped' do
      queue = described_class.new(2)
      pushed = []
      producer = spin { 4.times { |i| queue << i; pushed << i } }
      snooze
      expect(pushed).to eq([0, 1])
      expect(queue.shift).to eq(0)
      snooze
      expect(pushed).to eq([0, 1, 2])
      queue.cap(nil)
      snooze
      producer.await
      expect(queue.shift_all).to eq([1, 2, 3])
    end

    it 'drops an interrupted waiter' do
      queue = described_class.new
      waiter = spin { queue.shift }
      snooze
      waiter.stop
      waiter.await
      expect(queue.num_waiting).to eq(0)
      queue << :kept
      expect(queue.shift).to eq(:kept)
    end
  end

  describe Polyphony::Channel do
    it 'delivers until closed, then nil' do
      channel = described_class.new
      reader = spin { items = []; while (item = channel.receive); items << item; end; items }
      channel << 1 << 2
      snooze
      channel.close
      expect(reader.await).to eq([1, 2])
      expect { channel << 3 }.to raise_error(Polyphony::Channel::ClosedError)
    end
  end

  describe Polyphony::Event do
    it 'wakes waiters with the signalled value' do
      event = described_class.new
      waiters = 2.times.map { spin { event.await } }
      snooze
      event.signal(:go)
      expect(waiters.map(&:await)).to eq(%i[go go])
      event.signal(:early)
      expect(event.await).to eq(:early)
    end
  end

  describe Polyphony::Mutex do
    it 'serialises critical sections across fibers' do
      mutex = described_class.new
      log = []
      fibers = 3.times.map do |i|
        spin { mutex.synchronize { log << [i, :in]; sleep 0.005; log << [i, :out] } }
      end
      Fiber.await(fibers)
      expect(log.each_slice(2).map { |a, b| a.first == b.first }).to all(be(true))
      expect(mutex).not_to be_locked
    end

    it 'refuses re-entry and foreign unlocks clearly' do
      mutex = described_class.new
      expect { mutex.synchronize { mutex.lock } }.to raise_error(ThreadError, /deadlock/)
      expect { mutex.unlock }.to raise_error(ThreadError, /not owned/)
    end
  end

  describe Polyphony::ResourcePool do
    it 'lends at most limit resources, made on demand' do
      made = 0
      pool = described_class.new(limit: 2) { made += 1 }
      in_use = 0
      peak = 0
      fibers = 5.times.map do
        spin do
          pool.acquire do
            in_use += 1
            peak = [peak, in_use].max
            sleep 0.005
            in_use -= 1
          end
        end
      end
      Fiber.await(fibers)
      expect(made).to eq(2)
      expect(peak).to eq(2)
      expect(pool.available).to eq(2)
      expect { described_class.new(limit: 1) }.to raise_error(ArgumentError)
    end
  end

  describe Polyphony::Throttler do
    it 'spaces calls out' do
      throttler = described_class.new(interval: 0.02)
      started = monotonic
      3.times { throttler.call {} }
      expect(monotonic - started).to be >= 0.035
      expect { described_class.new(0) }.to raise_error(ArgumentError)
    end
  end

  describe Polyphony::Timer do
    it 'runs after fibers and every loops (in the calling fiber) and stops them' do
      timer = described_class.new(resolution: 0.01)
      hits = []
      timer.after(0.01) { hits << :after }
      looping = spin { timer.every(0.01) { hits << :every }; :loop_ended }
      sleep 0.045
      timer.stop
      expect(looping.await).to eq(:loop_ended)
      count = hits.size
      sleep 0.02
      expect(hits.size).to eq(count)
      expect(hits).to include(:after)
      expect(hits.count(:every)).to be >= 2
      expect(timer.move_on_after(0.01, with_value: :x) { sleep 1 }).to eq(:x)
    end
  end
end
