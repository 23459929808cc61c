# frozen_string_literal: true

# Tipi grows Ruby's heap before it serves (Tipi::GCHeadroom), unless the GC is tuned already.
RSpec.describe 'tipi and the heap' do
  def heap_slots(env = {})
    tipi = TipiProcess.new('-l', '127.0.0.1:0', File.join(ROOT, 'spec', 'fixtures', 'tipi', 'extras.ru'), env: env)
    out, _err, status = run_command('curl', '-sS', '--max-time', '10', "http://127.0.0.1:#{tipi.port}/heap")
    expect(status).to be_success
    Integer(out)
  ensure
    tipi&.stop
  end

  it 'serves with room for about 200,000 more objects, unless RUBY_GC_HEAP_* variables say otherwise' do
    expect(heap_slots).to be > 150_000
    expect(heap_slots('RUBY_GC_HEAP_GROWTH_FACTOR' => '1.1')).to be < 100_000
  end
end
