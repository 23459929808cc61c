# frozen_string_literal: true

require 'socket'
require 'h1p'

# With Polyphony running on the thread, an IO source is read by the backend from its
# descriptor, with no Ruby method call; other fibers run while the parser waits.
RSpec.describe 'H1P::Parser fast path' do
  let(:counting) do
    Class.new(UNIXSocket) do
      attr_reader :calls

      def readpartial(*args)
        @calls = (@calls || 0) + 1
        super
      end
    end
  end

  it 'reads the socket through the backend, not readpartial, and lets other fibers run' do
    a, b = counting.pair
    ticks = 0
    ticker = spin { loop { sleep 0.005; ticks += 1 } }
    parser = H1P::Parser.new(a)
    spin do
      sleep 0.03
      b << "GET /slow HTTP/1.1\r\nHost: x\r\n"
      sleep 0.01
      b << "\r\n"
    end
    expect(parser.parse_headers[':path']).to eq('/slow')
    expect(a.calls).to be_nil
    expect(ticks).to be >= 3
    ticker.stop
  end

  it "takes Ruby's path when Ruby's own buffer holds bytes (after gets)" do
    a, b = counting.pair
    b << "PREFACE\nGET /after HTTP/1.1\r\n\r\n"
    expect(a.gets).to eq("PREFACE\n")
    expect(H1P::Parser.new(a).parse_headers[':path']).to eq('/after')
    expect(a.calls).to be >= 1
  end

  it 'uses readpartial on a thread that does not run Polyphony fibers' do
    a, b = counting.pair
    b << "GET /thread HTTP/1.1\r\n\r\n"
    path = Thread.new { H1P::Parser.new(a).parse_headers[':path'] }.value
    expect(path).to eq('/thread')
    expect(a.calls).to be >= 1
  end

  it 'is interrupted like any waiting fiber' do
    a, _b = UNIXSocket.pair
    parser = H1P::Parser.new(a)
    result = move_on_after(0.02, with_value: :timed_out) { parser.parse_headers }
    expect(result).to eq(:timed_out)
  end
end
