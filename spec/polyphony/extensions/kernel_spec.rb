# frozen_string_literal: true

RSpec.describe Polyphony::KernelAPI do
  describe '#sleep' do
    it 'lets other fibers run while it sleeps, and returns whole seconds like Kernel#sleep' do
      order = []
      spin { sleep 0.02; order << :slow }
      spin { sleep 0.01; order << :fast }
      started = monotonic
      expect(sleep(0.05)).to eq(0)
      expect(monotonic - started).to be_between(0.045, 1)
      expect(order).to eq(%i[fast slow])
    end

    it 'with no duration waits until scheduled, returning the value' do
      fiber = spin { sleep }
      snooze
      fiber.schedule(:woken)
      expect(fiber.await).to eq(:woken)
    end

    it 'rejects bad durations clearly' do
      expect { sleep(-1) }.to raise_error(ArgumentError, /negative/)
      expect { sleep('1') }.to raise_error(TypeError, /time interval/)
    end
  end

  describe '#snooze' do
    it 'runs the other runnable fibers first' do
      order = []
      spin { order << :a }
      spin { order << :b }
      snooze
      order << :main
      expect(order).to eq(%i[a b main])
    end
  end

  describe '#move_on_after' do
    it 'interrupts the block and returns with_value' do
      started = monotonic
      expect(move_on_after(0.02, with_value: :late) { sleep 1 }).to eq(:late)
      expect(monotonic - started).to be < 0.5
    end

    it 'returns the block value when in time, and cancels the timer' do
      expect(move_on_after(1) { :quick }).to eq(:quick)
      expect(Polyphony.__stats__[:timers]).to eq(0)
    end

    it 'can be reset from the block' do
      started = monotonic
      result = move_on_after(0.05, with_value: :timeout) do |timeout|
        3.times do
          sleep 0.03
          timeout.reset
        end
        :done
      end
      expect(result).to eq(:done)
      expect(monotonic - started).to be >= 0.09
    end

    it 'nests: an inner timeout does not swallow the outer one' do
      result = move_on_after(0.02, with_value: :outer) do
        move_on_after(1, with_value: :inner) { sleep 1 }
      end
      expect(result).to eq(:outer)
    end
  end

  describe '#cancel_after' do
    it 'raises Polyphony::Cancel in the block' do
      expect { cancel_after(0.01) { sleep 1 } }.to raise_error(Polyphony::Cancel)
    end

    it 'raises a given exception class or [class, message]' do
      expect { cancel_after(0.01, with_exception: IOError) { sleep 1 } }.to raise_error(IOError)
      expect do
        cancel_after(0.01, with_exception: [IOError, 'too slow']) { sleep 1 }
      end.to raise_error(IOError, 'too slow')
    end

    it 'interrupts a fiber busy snoozing (busy fibers do not starve timers)' do
      expect do
        cancel_after(0.02) { loop { snooze } }
      end.to raise_error(Polyphony::Cancel)
    end
  end

  describe 'stock Timeout.timeout' do
    it 'interrupts the calling fiber only' do
      other = spin { sleep 0.05; :other_fine }
      expect { Timeout.timeout(0.01) { sleep 1 } }.to raise_error(Timeout::Error, 'execution expired')
      expect(other.await).to eq(:other_fine)
    end

    it 'takes a class and message, and nil or 0 mean no timeout' do
      expect { Timeout.timeout(0.01, IOError, 'slow') { sleep 1 } }.to raise_error(IOError, 'slow')
      expect(Timeout.timeout(nil) { :x }).to eq(:x)
      expect(Timeout.timeout(0) { :y }).to eq(:y)
    end
  end

  describe '#every, #after, #throttled_loop, #spin_loop' do
    it 'every runs on a fixed schedule' do
      ticks = []
      move_on_after(0.13) { every(0.03) { ticks << monotonic } }
      expect(ticks.size).to be_between(3, 5)
      expect { every(0) {} }.to raise_error(ArgumentError)
    end

    it 'after runs the block once later, in a fiber' do
      fiber = after(0.01) { :later }
      expect(fiber.await).to eq(:later)
    end

    it 'throttled_loop keeps to the rate and count' do
      started = monotonic
      runs = []
      throttled_loop(50, count: 4) { |i| runs << i }
      expect(runs).to eq([0, 1, 2, 3])
      expect(monotonic - started).to be >= 0.055
    end

    it 'spin_loop loops until stopped' do
      count = 0
      fiber = spin_loop { count += 1; snooze }
      3.times { snooze }
      fiber.stop
      fiber.await
      expect(count).to be >= 2
      throttled = spin_loop(rate: 100) { count += 1 }
      sleep 0.05
      throttled.stop
      expect { spin_loop }.to raise_error(ArgumentError)
    end
  end

  describe '#supervise' do
    it 'waits for all children by default' do
      spin { sleep 0.01 }
      spin { sleep 0.02 }
      supervise
      expect(Fiber.current.children).to be_empty
    end

    it 'calls the block with each fiber and its result' do
      seen = []
      a = spin { :a }
      b = spin { raise 'b failed' }
      supervise { |fiber, result| seen << [fiber, result.is_a?(Exception) ? result.message : result] }
      expect(seen).to contain_exactly([a, :a], [b, 'b failed'])
    end

    it 'restarts after an error with restart: :on_error, and keeps supervising replacements' do
      runs = 0
      supervisor = spin do
        spin do
          runs += 1
          raise 'crash' if runs < 3

          :finally_ok
        end
        supervise(restart: :on_error)
      end
      sleep 0.02
      expect(runs).to eq(3)
      expect(supervisor.state).to eq(:dead)
    end

    it 'restarts after any termination with restart: :always' do
      runs = 0
      worker = spin { runs += 1; sleep 0.005 }
      supervisor = spin { supervise(worker, restart: :always) }
      sleep 0.05
      expect(runs).to be >= 3
      supervisor.terminate
      supervisor.await
      expect(Fiber.current.children).to be_empty
    end

    it 'rejects unknown policies' do
      expect { supervise(restart: :sometimes) }.to raise_error(ArgumentError, /restart:/)
    end
  end
end
