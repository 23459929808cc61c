# frozen_string_literal: true

# Polyphony::SharedCounters: integers a process and its forked children all see (Tipi's workers
# share their connection counts through them).
RSpec.describe Polyphony::SharedCounters do
  it 'is seen and written by forked children' do
    counters = described_class.new(4)
    expect(Array.new(4) { |i| counters[i] }).to eq([nil, nil, nil, nil])
    counters[0] = 5
    pid = Process.fork do
      counters[1] = counters[0] + 2
      exit!(0)
    end
    Process.wait(pid)
    expect([counters[0], counters[1]]).to eq([5, 7])
    counters[2] = 3
    expect(counters.min_other(2)).to eq(5)
    expect(counters.min_other(0)).to eq(3)
    counters[1] = nil
    expect(counters[1]).to be_nil
  end

  it 'refuses bad sizes and indices' do
    expect { described_class.new(0) }.to raise_error(ArgumentError)
    expect { described_class.new(2)[2] }.to raise_error(IndexError, 'counter 2 of 2')
    expect(described_class.new(1).min_other(0)).to be_nil
  end
end
