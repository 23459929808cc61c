# frozen_string_literal: true

RSpec.describe 'examples/calculator.rb' do
  def run_example(*args)
    run_command(RbConfig.ruby, 'examples/calculator.rb', *args)
  end

  it 'answers calc(:+, 2, 3) and spin { calc(:**, 2, 3) }.await' do
    out, err, status = run_example
    expect([out, err, status.success?]).to eq(["2 + 3 = 5\n2 ** 3 = 8\n", '', true])
  end

  it 'exits non-zero with the TypeError when the worker crashes unsupervised' do
    out, err, status = run_example('crash')
    expect(out).to eq("2 + 3 = 5\n")
    expect(status.exitstatus).to eq(1)
    expect(err).to include("nil can't be coerced into Integer (TypeError)")
    expect(err).to include('examples/calculator.rb:12')
  end

  it 'keeps answering after the worker crashes when supervised' do
    out, err, status = run_example('supervised')
    expect(err).to eq('')
    expect(status).to be_success
    expect(out).to eq(<<~OUT)
      2 + 3 = 5
      calculator crashed (TypeError: nil can't be coerced into Integer); restarting
      2 + nil = no_answer
      2 ** 3 = 8
    OUT
  end
end
