# frozen_string_literal: true

require 'socket'

RSpec.describe 'Polyphony::Backend#chain' do
  it 'writes a head, splices a body and writes a trailer in order, whatever the sizes' do
    [10, 100_000].each do |size|
      a, b = UNIXSocket.pair
      body = Polyphony.pipe
      spin { body << ('x' * size); body.close_write }
      reader = spin { b.read }
      total = Polyphony.backend.chain([:write, a, "HEAD\r\n"], [:splice, body, a, size], [:write, a, "\r\nEND"])
      a.close
      expect(total).to eq(size + 11)
      expect(reader.await).to eq("HEAD\r\n#{'x' * size}\r\nEND")
    end
  end

  it 'finishes a write the socket took only part of' do
    a, b = UNIXSocket.pair
    big = 'y' * 1_000_000
    reader = spin { b.read }
    expect(Polyphony.backend.chain([:write, a, 'start:'], [:send, a, big], [:write, a, ':end'])).to eq(1_000_010)
    a.close
    expect(reader.await).to eq("start:#{big}:end")
  end

  it 'raises the Errno of a failed op, and refuses bad ops' do
    reader, writer = IO.pipe
    reader.close
    expect { Polyphony.backend.chain([:write, writer, 'x']) }.to raise_error(Errno::EPIPE)
    expect { Polyphony.backend.chain }.to raise_error(ArgumentError, /at least one op/)
    expect { Polyphony.backend.chain([:read, writer]) }.to raise_error(ArgumentError, /unknown chain op :read/)
    expect { Polyphony.backend.chain([:splice, writer, writer, -1]) }.to raise_error(ArgumentError, /non-negative/)
  end
end
